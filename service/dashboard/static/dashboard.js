// The dashboard's only script: confirmations before changes, and live job progress.
"use strict";

document.addEventListener("submit", (event) => {
  const question = event.target.dataset && event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

function percent(value) {
  return value === undefined || value === null ? "n/a" : (100 * value).toFixed(1) + "%";
}

function renderStages(cell, stages) {
  const names = Object.keys(stages || {});
  if (!names.length) return;
  const list = document.createElement("ul");
  list.className = "stages";
  for (const name of names) {
    const figures = stages[name];
    const item = document.createElement("li");
    const nfr = figures.nfr === undefined ? "" : `NFR ${percent(figures.nfr)}, `;
    item.textContent = `${name} (epoch ${figures.epoch}): ${nfr}error ${percent(figures.error)}`;
    list.appendChild(item);
  }
  cell.replaceChildren(list);
}

function renderJob(row, job) {
  const progress = job.progress || {};
  const parts = [job.status];
  if (job.phase) parts.push(job.phase);
  if (progress.stage) parts.push(progress.stage);
  if (progress.epoch) parts.push(`epoch ${progress.epoch}/${progress.epochs}`);
  row.querySelector('[data-field="status"]').textContent = parts.join(" · ");
  const fraction = progress.fraction || 0;
  row.querySelector("progress").value = fraction;
  row.querySelector('[data-field="progress"]').textContent = Math.round(100 * fraction) + "%";
  renderStages(row.querySelector('[data-field="stages"]'), progress.stages);
  row.dataset.status = job.status;
}

async function follow(row) {
  for (;;) {
    const response = await fetch(`/v1/upgrades/${row.dataset.job}`, {
      credentials: "same-origin", headers: { accept: "application/json" },
    });
    if (!response.ok) return;
    const job = await response.json();
    renderJob(row, job);
    if (FINISHED.has(job.status)) {
      window.location.reload();  // the new release and its report appear in the tables
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

for (const row of document.querySelectorAll("tr[data-job]")) {
  if (!FINISHED.has(row.dataset.status)) follow(row);
}
