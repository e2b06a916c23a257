"""The run verdict: which runs fail the Airflow check task (pure; no store, no Airflow)."""

from __future__ import annotations

from bcdv.engine.report import PassReport
from bcdv.service.outcome import run_verdict


def _report(mapping: str, failed: int, *, dry_run: bool = False,
            direction: str = "to_dataverse") -> dict[str, object]:
    return {"mapping": mapping, "direction": direction, "dry_run": dry_run, "failed": failed,
            "skipped": 0, "inserted": 3}


def test_default_threshold_fails_on_any_new_failure() -> None:
    verdict = run_verdict([_report("CUSTOMER", 0), _report("CUSTOMER", 1,
                                                           direction="to_business_central")])
    assert not verdict.ok
    assert [(m.mapping, m.failed) for m in verdict.over] == [("CUSTOMER", 1)]
    assert "CUSTOMER: 1 failed record (threshold: any failure)" in verdict.message
    assert "bcdv errors list -m CUSTOMER" in verdict.message
    assert "/bcdv/errors?mapping=CUSTOMER" in verdict.message


def test_no_failure_is_ok() -> None:
    verdict = run_verdict([_report("CUSTOMER", 0), _report("VENDOR", 0)], 0)
    assert verdict.ok and verdict.over == []
    assert verdict.message.startswith("run outcome ok")


def test_threshold_is_reached_not_exceeded() -> None:
    assert run_verdict([_report("CUSTOMER", 2)], 3).ok
    verdict = run_verdict([_report("CUSTOMER", 2), _report("CUSTOMER", 1)], 3)
    assert not verdict.ok  # the passes of one mapping add up
    assert "CUSTOMER: 3 failed records (threshold: 3)" in verdict.message


def test_per_mapping_thresholds_with_a_default() -> None:
    reports = [_report("CUSTOMER", 4), _report("VENDOR", 1), _report("CONTACT", 0)]
    verdict = run_verdict(reports, {"CUSTOMER": 5, "VENDOR": None}, default=0)
    assert [m.mapping for m in verdict.over] == ["VENDOR"]  # None -> default: any failure
    verdict = run_verdict(reports, {"CUSTOMER": 5, "VENDOR": None}, default=2)
    assert verdict.ok
    verdict = run_verdict(reports, {"CUSTOMER": 4}, default=2)
    assert [m.mapping for m in verdict.over] == ["CUSTOMER"]
    assert "'bcdv errors list -m CUSTOMER'" in verdict.message
    assert "VENDOR" not in verdict.message


def test_dry_run_never_fails() -> None:
    verdict = run_verdict([_report("CUSTOMER", 8, dry_run=True)], 0, dry_run=True)
    assert verdict.ok and verdict.dry_run and verdict.over == []
    # A dry-run pass inside a real run is not counted either.
    assert run_verdict([_report("CUSTOMER", 8, dry_run=True)], 0).ok


def test_skipped_records_are_not_new_failures_and_missing_reports_are_ignored() -> None:
    reports = [{**_report("CUSTOMER", 0), "skipped": 5}, None]
    assert run_verdict(reports).ok


def test_pass_report_objects_are_judged_like_their_dicts() -> None:
    report = PassReport("CUSTOMER", "to_dataverse", "full", False, "job-1", 10, failed=2)
    assert not run_verdict([report]).ok
    assert run_verdict([report], {"CUSTOMER": 3}).ok
    assert not run_verdict([report.to_dict()]).ok
