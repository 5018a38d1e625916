"""The `mpt` command end to end on `digits`: train, upgrade, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpt.cli import main
from mpt.io import load_package
from mpt.metrics import FlipReport


@pytest.fixture(scope="module")
def old_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "old.zip"
    assert (
        main(
            [
                "train",
                "--dataset",
                "digits",
                "--classes",
                "0:5",
                "--epochs",
                "2",
                "--seed",
                "0",
                "--out",
                str(path),
                "--quiet",
            ]
        )
        == 0
    )
    return path


@pytest.fixture(scope="module")
def upgraded(old_package: Path) -> tuple[Path, Path, Path]:
    folder = old_package.parent
    new, ref, report = folder / "new.zip", folder / "ref.zip", folder / "report.json"
    code = main(
        [
            "upgrade",
            "--old",
            str(old_package),
            "--dataset",
            "digits",
            "--method",
            "mpt_kl",
            "--bias",
            "1",
            "--bias",
            "4",
            "--epochs",
            "2",
            "--out",
            str(new),
            "--save-reference",
            str(ref),
            "--report",
            str(report),
            "--quiet",
        ]
    )
    assert code == 0
    return new, ref, report


def test_train_writes_package_with_selected_classes(old_package) -> None:
    package = load_package(old_package)
    assert package.manifest.labels == ["0", "1", "2", "3", "4"]
    assert package.manifest.info["method"] == "no_treatment"


def test_upgrade_writes_loadable_extended_package(upgraded) -> None:
    new, _, _ = upgraded
    package = load_package(new)
    assert package.manifest.labels[:5] == ["0", "1", "2", "3", "4"]
    assert package.manifest.num_classes == 10
    assert package.manifest.info["method"] == "mpt_kl"


def test_upgrade_writes_complete_reports(upgraded) -> None:
    _, _, report_path = upgraded
    data = json.loads(report_path.read_text())
    for key in ("candidate", "no_treatment"):
        report = FlipReport.from_dict(data[key])
        assert report.num_old == 5 and report.num_classes == 10
        assert len(report.per_class) == 5
        assert report.nfr.old.n > 0


def test_evaluate_json_is_a_flip_report(upgraded, old_package, capsys) -> None:
    new, _, _ = upgraded
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                "--old",
                str(old_package),
                "--new",
                str(new),
                "--dataset",
                "digits",
                "--json",
            ]
        )
        == 0
    )
    report = FlipReport.from_dict(json.loads(capsys.readouterr().out))
    assert report.num_samples > 0


def test_evaluate_table_names_the_rates(upgraded, old_package, capsys) -> None:
    new, _, _ = upgraded
    capsys.readouterr()
    main(["evaluate", "--old", str(old_package), "--new", str(new), "--dataset", "digits"])
    out = capsys.readouterr().out
    assert "NFR, old-class samples" in out and "BTC" in out


def test_upgrade_with_unknown_method_exits_with_usage_error(old_package, tmp_path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "upgrade",
                "--old",
                str(old_package),
                "--dataset",
                "digits",
                "--method",
                "magic",
                "--out",
                str(tmp_path / "x.zip"),
            ]
        )
    assert exit_info.value.code == 2


def test_upgrade_bias_for_method_without_bias_is_refused(old_package, tmp_path, capsys) -> None:
    out = tmp_path / "x.zip"
    code = main(
        [
            "upgrade",
            "--old",
            str(old_package),
            "--dataset",
            "digits",
            "--method",
            "pct_kl",
            "--bias",
            "2",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 2 and "has no bias" in capsys.readouterr().err
    assert not out.exists()


def test_upgrade_corrupt_old_package_is_refused(tmp_path, capsys) -> None:
    bad = tmp_path / "old.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    code = main(
        [
            "upgrade",
            "--old",
            str(bad),
            "--dataset",
            "digits",
            "--out",
            str(tmp_path / "new.zip"),
            "--quiet",
        ]
    )
    assert code == 2 and "error" in capsys.readouterr().err
    assert not (tmp_path / "new.zip").exists()


def test_upgrade_default_sweep_reports_its_selection(old_package, tmp_path, capsys) -> None:
    report = tmp_path / "report.json"
    args = ["upgrade", "--old", str(old_package), "--dataset", "digits", "--epochs", "1"]
    args += ["--out", str(tmp_path / "new.zip"), "--report", str(report), "--quiet"]
    args += ["--gate", "min_new_class_accuracy=0.0", "--error-budget", "0.02"]

    assert main(args) == 0

    summary = json.loads(report.read_text())
    assert [c["relative_bias"] for c in summary["candidates"]] == [0.0, 0.125, 0.25, 0.5]
    assert summary["margin"] > 0
    assert summary["selection"]["error_budget"] == 0.02
    assert sum(c["chosen"] for c in summary["candidates"]) == 1
    out = capsys.readouterr().out
    assert "old model's median margin" in out and "selection:" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--gate", "max_nfrr=0.1"], "unknown gate rule 'max_nfrr'"),
        (["--gate", "max_nfr"], "--gate takes key=value"),
        (["--error-budget", "2"], "'error_budget' must be between"),
        (["--method", "pct_kl", "--bias", "1"], "has no bias"),
    ],
)
def test_upgrade_refuses_bad_options_before_training(
    old_package, tmp_path, capsys, extra, message
) -> None:
    args = ["upgrade", "--old", str(old_package), "--dataset", "digits", "--epochs", "1"]

    code = main([*args, "--out", str(tmp_path / "new.zip"), "--quiet", *extra])

    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "new.zip").exists()
