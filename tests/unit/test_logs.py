"""Structured logs: fields passed with extra= in the text and JSON formats."""
import io
import json
import logging
import re

import netaddr
import pytest

from netplane.logs import configure_logging, fields_of


@pytest.fixture
def logged():
    """Configure the root logger on a buffer; returns a function giving its lines."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level

    def setup(format: str):
        buffer = io.StringIO()
        configure_logging("DEBUG", stream=buffer, format=format)
        return lambda: buffer.getvalue().splitlines()

    yield setup
    root.handlers[:], level = saved
    root.setLevel(level)


SYNC = {"sync": "partial", "duration_ms": 3.2, "services": ["default/web:http", "kube-system/dns:53"],
        "changed": 2, "service_ports": 14}


def test_text_fields_follow_the_message(logged):
    lines = logged("text")
    logging.getLogger("netplane.proxy").info("sync done", extra=SYNC)
    (line,) = lines()
    assert re.fullmatch(r"ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=info logger=netplane.proxy "
                        r'msg="sync done" sync=partial duration_ms=3.2 '
                        r"services=default/web:http,kube-system/dns:53 changed=2 service_ports=14", line)


def test_text_values_are_quoted_and_escaped_when_needed(logged):
    lines = logged("text")
    logging.getLogger("t").warning("odd", extra={"path": 'a "b"\\c', "empty": "", "eq": "k=v", "nl": "x\ny",
                                                 "flag": True, "none": None, "set": {"b", "a"}})
    (line,) = lines()
    fields = line.split('msg="odd" ', 1)[1]
    assert fields == (r'path="a \"b\"\\c" empty="" eq="k=v" nl="x\ny" flag=true none=null set=a,b')


def test_text_message_with_quotes_stays_on_one_line(logged):
    lines = logged("text")
    logging.getLogger("t").info('said "hi"\nthen left')
    assert lines()[0].endswith(r'msg="said \"hi\"\nthen left"')


def test_text_exception_is_the_error_key_after_the_fields(logged):
    lines = logged("text")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("t").exception("sync failed", extra={"sync": "full"})
    (line,) = lines()
    assert 'msg="sync failed" sync=full error="Traceback' in line
    assert "RuntimeError: boom" in line and "\n" not in line


def test_json_line_has_the_record_keys_and_the_fields(logged):
    lines = logged("json")
    logging.getLogger("netplane.proxy").info("sync done", extra=SYNC)
    (line,) = lines()
    entry = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry.pop("ts"))
    assert entry == {"level": "info", "v": 0, "logger": "netplane.proxy", "msg": "sync done", **SYNC}


def test_json_debug_is_klog_verbosity_4_and_args_are_formatted(logged):
    lines = logged("json")
    logging.getLogger("t").debug("%d ports", 3)
    entry = json.loads(lines()[0])
    assert (entry["level"], entry["v"], entry["msg"]) == ("debug", 4, "3 ports")


def test_json_exception_is_error(logged):
    lines = logged("json")
    try:
        raise ValueError("bad \"value\"")
    except ValueError:
        logging.getLogger("t").error("failed", exc_info=True)
    entry = json.loads(lines()[0])
    assert entry["error"].startswith("Traceback") and entry["error"].endswith('ValueError: bad "value"')


def test_json_values_it_cannot_hold_are_written_as_text(logged):
    lines = logged("json")
    logging.getLogger("t").info("x", extra={"ip": netaddr.IPAddress("10.0.0.1"), "ports": {443, 80},
                                            "tuple": ("a", 1)})
    entry = json.loads(lines()[0])
    assert (entry["ip"], entry["ports"], entry["tuple"]) == ("10.0.0.1", [443, 80], ["a", 1])


def test_json_unencodable_structures_fall_back_to_str(logged):
    lines = logged("json")
    logging.getLogger("t").info("x", extra={"by_pair": {("a", 1): 2}, "nan": float("nan"), "ok": 1})
    entry = json.loads(lines()[0])
    assert entry["by_pair"] == "{('a', 1): 2}" and entry["nan"] == "nan" and entry["ok"] == "1"


@pytest.mark.parametrize("format", ["text", "json"])
def test_fields_named_like_the_line_keys_do_not_hide_them(logged, format):
    lines = logged(format)
    logging.getLogger("t").info("real", extra={"level": "fake", "ts": "then", "logger": "other"})
    line = lines()[0]
    if format == "json":
        entry = json.loads(line)
        assert (entry["level"], entry["level_"], entry["ts_"], entry["logger"]) == ("info", "fake", "then", "t")
    else:
        assert " level=info " in line and line.endswith("level_=fake ts_=then logger_=other")


def test_fields_of_skips_logging_own_attributes():
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "m", (), None)
    record.message, record.asctime = "m", "now"
    record.sync = "full"
    assert fields_of(record) == {"sync": "full"}


def test_unknown_format_is_refused_before_a_file_is_made(tmp_path):
    with pytest.raises(ValueError, match="log format 'xml'"):
        configure_logging("INFO", path=str(tmp_path / "log"), format="xml")
    assert not (tmp_path / "log").exists()


def test_json_to_a_file(logged, tmp_path):
    root = logging.getLogger()
    saved = root.handlers[:]
    path = tmp_path / "proxy.log"
    try:
        configure_logging("INFO", path=str(path), format="json")
        logging.getLogger("t").debug("hidden")
        logging.getLogger("t").info("shown", extra={"n": 1})
        for handler in root.handlers:
            handler.close()
    finally:
        root.handlers[:] = saved
    (entry,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert (entry["msg"], entry["n"]) == ("shown", 1)
