"""Config loading and validation (etl/config.py) and the CLI's handling of a bad config."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from etl import cli
from etl.config import ConfigError, apply_override, load, mask_url, parse_value

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo.toml"

MINIMAL = """\
job = "mini"

[source]
type = "http"
city = "bj"
start_urls = ["http://demo.test/{city}/list/"]

[[crawl.pages]]
kind = "list"
items = true

[items]
select = "ul.list > li"
key = { attr = "data-id" }

[fields]
title = { css = "a.title" }
price = { css = "span.price", type = "decimal", scale = 10000 }
"""


@pytest.fixture(autouse=True)
def no_env_database(monkeypatch):
    monkeypatch.delenv("ETL_DATABASE_URL", raising=False)


def write(tmp_path: Path, text: str, name: str = "job.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def minimal(tmp_path: Path, extra: str = "", replace: tuple[str, str] | None = None) -> str:
    text = MINIMAL
    if replace:
        assert replace[0] in text, replace
        text = text.replace(*replace)
    return write(tmp_path, text + extra)


def config_error(path: str, overrides: list[str] = ()) -> str:
    with pytest.raises(ConfigError) as info:
        load(path, overrides)
    msg = str(info.value)
    assert "\n" not in msg, f"not one line: {msg!r}"
    assert msg.strip() == msg and msg
    return msg


# ---------------------------------------------------------------------------------------------- good configs


def test_demo_config_loads():
    cfg = load(DEMO)
    assert cfg.job == "demo-listings" and cfg.source_type == "http" and cfg.site == "demo"
    assert cfg.start_urls == ("{base_url}/bj/ershoufang/",)  # the demo server's address is filled in at run time
    assert cfg.demo == {"listings": 5000, "encoding": "gbk", "pagination": "json", "day": 0}
    assert list(cfg.pages) == ["city", "district", "subdistrict"]
    assert cfg.pages["city"].facets.kind == "district" and cfg.pages["city"].paginate
    assert cfg.pages["district"].facets.kind == "subdistrict"
    assert cfg.pages["subdistrict"].facets is None
    assert cfg.cap == 3000
    assert cfg.pagination.next == "div.page-box a.next" and cfg.pagination.max_pages == 100
    assert cfg.pagination.total_pages.json == "totalPage"
    assert cfg.items.detail.kind == "detail" and cfg.items.skip
    assert cfg.fields["city"].source == "config" and cfg.fields["city"].value == "bj"
    assert cfg.fields["district"].source == "detail"
    assert cfg.fields["total_price"].type == "decimal" and cfg.fields["total_price"].scale == "10000"
    assert cfg.table == "listings"
    assert cfg.database_url == "sqlite:///etl.db"
    assert (cfg.run.fetch_threads, cfg.run.parse_processes, cfg.run.batch_size) == (16, 2, 1000)
    assert cfg.fetch.robots is True and cfg.run.engine == "selectolax"


def test_minimal_config_gets_defaults(tmp_path):
    cfg = load(minimal(tmp_path))
    assert cfg.start_urls == ("http://demo.test/bj/list/",)
    assert cfg.site == "mini"  # site defaults to the job name
    assert cfg.run.fetch_threads == 16 and cfg.run.parse_processes >= 1 and cfg.run.engine == "selectolax"
    assert cfg.fetch.max_bytes == 10_000_000 and cfg.fetch.retries == 2
    assert cfg.fields["title"].source == "item" and cfg.fields["title"].type == "text"
    assert cfg.items.detail is None
    assert cfg.pagination.total_pages is None


def test_field_shorthand_string_is_a_css_selector(tmp_path):
    cfg = load(minimal(tmp_path, 'note = "div.note"\n'))
    assert cfg.fields["note"].css == "div.note" and cfg.fields["note"].type == "text"


# ---------------------------------------------------------------------------------------------- bad configs


@pytest.mark.parametrize(("extra", "replace", "names"), [
    ('\n[bogus]\nx = 1\n', None, ["bogus"]),                                            # unknown top-level key
    ('\n[run]\nfetch_threads = 4\nthreads = 8\n', None, ["[run]", "threads"]),          # unknown key in [run]
    ('\n[run]\nfetch_threads = "many"\n', None, ["[run]", "fetch_threads", "many"]),   # wrong type
    ('\n[run]\nfetch_threads = true\n', None, ["fetch_threads", "boolean"]),
    ('\n[run]\nfetch_threads = 0\n', None, ["fetch_threads", "at least 1"]),
    ('\n[run]\nengine = "lxml"\n', None, ["[run].engine", "lxml"]),
    ('\n[run]\nstart_method = "thread"\n', None, ["[run].start_method"]),
    ('\n[run]\nhttp = "httpx"\n', None, ["[run].http", "httpx", "requests or curl"]),
    ('\n[run]\nhttp = 1\n', None, ["[run].http", "expected str"]),
    ('\n[politeness]\nrobots = "yes"\n', None, ["[politeness]", "robots"]),
    ('\n[politeness]\nmax_bytes = 0\n', None, ["max_bytes"]),
    ('rooms = { css = "div.info", regex = "(\\\\d+室" }\n', None, ["[fields.rooms]", "regex"]),   # bad regex
    ('t2 = { css = "div.title >" }\n', None, ["[fields.t2]", "css", "div.title >"]),            # bad CSS
    ('t3 = { css = "" }\n', None, ["[fields.t3]", "css"]),
    ('t4 = { css = "a", type = "money" }\n', None, ["[fields.t4]", "type", "money"]),         # unknown type
    ('t5 = { css = "a", from = "detail" }\n', None, ["[fields.t5]", "from", "detail"]),       # no [items].detail
    ('t6 = { css = "a", from = "somewhere" }\n', None, ["[fields.t6]", "from"]),
    ('t7 = { css = "a", scale = true }\n', None, ["[fields.t7]", "scale"]),
    ('t8 = { css = "a", colour = "red" }\n', None, ["[fields.t8]", "colour"]),
    ('t9 = { type = "int" }\n', None, ["[fields.t9]", "css"]),
    ('t10 = { value = "{nope}" }\n', None, ["[fields.t10]", "value", "nope"]),
    ('\n[target]\ntable = "frontier"\n', None, ["[target].table", "frontier"]),
    ('\n[transform]\ntype = "sentiment"\n', None, ["[transform].type"]),
    ('\n[database]\nurl = "mssql://root:hunter2@db/x"\n', None, ["[database].url", "mssql://"]),  # unsupported DB
    ('\n[database]\nurl = "etl.db"\n', None, ["[database].url"]),
    ("", ('start_urls = ["http://demo.test/{city}/list/"]', 'start_urls = ["ftp://demo.test/list/"]'),
     ["[source].start_urls", "ftp://demo.test/list/"]),                                  # non-http start URL
    ("", ('start_urls = ["http://demo.test/{city}/list/"]', 'start_urls = ["demo.test/list/"]'),
     ["[source].start_urls"]),
    ("", ('start_urls = ["http://demo.test/{city}/list/"]', 'start_urls = ["http://demo.test/{town}/"]'),
     ["[source].start_urls", "{town}"]),                                                 # unknown placeholder
    ("", ('start_urls = ["http://demo.test/{city}/list/"]', 'start_urls = []'), ["[source].start_urls"]),
    ("", ('start_urls = ["http://demo.test/{city}/list/"]', 'start_urls = "http://demo.test/"'),
     ["[source].start_urls"]),
    ("", ('type = "http"', 'type = "ftp"'), ["[source].type", "ftp"]),
    ("", ('job = "mini"', 'job = "my job!"'), ["job"]),
    ("", ('job = "mini"\n', ''), ["job"]),                                                 # missing job
    ("", ('[items]\nselect = "ul.list > li"\nkey = { attr = "data-id" }\n', ''), ["[items]"]),  # missing [items]
    ("", ('key = { attr = "data-id" }', ''), ["[items]", "key"]),
    ("", ('select = "ul.list > li"', 'select = "ul.list >> li"'), ["[items].select"]),
    ("", ('key = { attr = "data-id" }', 'key = { attr = "data-id" }\ndetail = { css = "a", kind = "" }'),
     ["[items].detail", "kind"]),
    ("", ('kind = "list"\nitems = true', 'kind = "list"\nitems = "yes"'), ["[[crawl.pages]] #1", "items"]),
    ("", ('kind = "list"\nitems = true', 'items = true'), ["[[crawl.pages]] #1", "kind"]),
    ("", ('kind = "list"\nitems = true', 'kind = "list"\npaginate = true'), ["[crawl.pagination]"]),
    ('\n[crawl.pagination]\ntotal_pages = { css = "div.pages" }\n', None, ["[crawl.pagination]", "total_pages"]),
    ('\n[crawl.pagination]\nnext = "a.next["\n', None, ["[crawl.pagination].next"]),
    ('\n[crawl.pagination]\nmax_pages = "all"\n', None, ["[crawl.pagination]", "max_pages"]),
    ("", ('[[crawl.pages]]\nkind = "list"\nitems = true\n', ''), ["[crawl]"]),
])
def test_bad_config_is_one_line_naming_file_and_key(tmp_path, extra, replace, names):
    path = minimal(tmp_path, extra, replace)
    msg = config_error(path)
    assert msg.startswith(f"{path}: ")
    for name in names:
        assert name in msg, f"{name!r} not in {msg!r}"


def test_unsupported_database_url_message_masks_the_password(tmp_path):
    msg = config_error(minimal(tmp_path, '\n[database]\nurl = "mssql://root:hunter2@db/x"\n'))
    assert "hunter2" not in msg


def test_invalid_toml(tmp_path):
    path = write(tmp_path, 'job = "x"\n[source\ntype = "http"\n')
    msg = config_error(path)
    assert msg.startswith(f"{path}: not valid TOML")
    assert "line 2" in msg


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.toml")
    assert config_error(path) == f"{path}: no such config file"


def test_section_that_is_not_a_table(tmp_path):
    msg = config_error(minimal(tmp_path, replace=("[source]\ntype", 'run = 5\n[source]\ntype')))
    assert "[run]" in msg and "table" in msg


def test_errors_in_overridden_values_name_the_key(tmp_path):
    msg = config_error(minimal(tmp_path), ["fetch_threads=many"])
    assert "[run].fetch_threads" in msg and "'many'" in msg


def test_non_numeric_scale_string_is_rejected(tmp_path):
    msg = config_error(minimal(tmp_path, 'area = { css = "a", type = "float", scale = "ten" }\n'))
    assert "[fields.area].scale" in msg


def test_negative_parse_processes_is_rejected(tmp_path):
    msg = config_error(minimal(tmp_path, "\n[run]\nparse_processes = -2\n"))
    assert "[run].parse_processes" in msg


def test_link_to_unknown_page_kind_is_rejected(tmp_path):
    path = minimal(tmp_path, replace=('kind = "list"\nitems = true',
                                      'kind = "list"\nitems = true\nlinks = [{ css = "a.more", kind = "lsit" }]'))
    msg = config_error(path)
    assert "lsit" in msg


# ---------------------------------------------------------------------------------------------- overrides


def test_parse_value_is_a_toml_literal_or_a_string():
    assert parse_value("8") == 8 and isinstance(parse_value("8"), int)
    assert parse_value("true") is True and parse_value("false") is False
    assert parse_value("1.5") == 1.5
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value('"8"') == "8"
    assert parse_value("sh") == "sh"
    assert parse_value("div.page-box a") == "div.page-box a"
    assert parse_value("sqlite:///x.db") == "sqlite:///x.db"


def raw_of(path: Path = DEMO) -> dict:
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def test_bare_key_resolves_to_its_section():
    raw = raw_of()
    apply_override(raw, "city=sh", "demo.toml")
    assert raw["source"]["city"] == "sh"
    apply_override(raw, "fetch_threads=4", "demo.toml")
    assert raw["run"]["fetch_threads"] == 4


def test_bare_key_of_a_missing_section_uses_the_defaults(tmp_path):
    raw = raw_of(Path(minimal(tmp_path)))
    assert "run" not in raw and "politeness" not in raw
    apply_override(raw, "fetch_threads=4", "x")
    apply_override(raw, "robots=false", "x")
    apply_override(raw, "delay=0.25", "x")
    assert raw["run"] == {"fetch_threads": 4}
    assert raw["politeness"] == {"robots": False, "delay": 0.25}


def test_load_applies_overrides(tmp_path):
    cfg = load(DEMO, ["city=sh", "fetch_threads=4", "run.batch_size=50", "politeness.robots=false",
                      "source.demo.listings=400", "crawl.cap=100", "crawl.pagination.links=div.page-box a"])
    assert cfg.vars["city"] == "sh"
    assert cfg.start_urls == ("{base_url}/sh/ershoufang/",)
    assert cfg.fields["city"].value == "sh"
    assert cfg.run.fetch_threads == 4 and cfg.run.batch_size == 50 and cfg.fetch.robots is False
    assert cfg.demo["listings"] == 400 and cfg.cap == 100
    assert cfg.pagination.links == "div.page-box a"
    cfg2 = load(minimal(tmp_path), ["fetch_threads=4"])  # [run] absent from the file
    assert cfg2.run.fetch_threads == 4


def test_override_value_may_contain_equals_sign():
    cfg = load(DEMO, ['items.skip=li[data-ad="1"]'])
    assert cfg.items.skip == 'li[data-ad="1"]'


def test_override_creates_nested_tables(tmp_path):
    cfg = load(minimal(tmp_path), ["crawl.pagination.next=a.next", "crawl.pagination.max_pages=7"])
    assert cfg.pagination.next == "a.next" and cfg.pagination.max_pages == 7


def test_top_level_bare_key():
    assert load(DEMO, ["job=other-job"]).job == "other-job"


def test_ambiguous_bare_key_is_an_error(tmp_path):
    raw = raw_of(Path(minimal(tmp_path, '\n[transform]\ntype = "none"\n')))
    with pytest.raises(ConfigError) as info:
        apply_override(raw, "type=sql", "x")
    msg = str(info.value)
    assert "ambiguous" in msg and "source.type" in msg and "transform.type" in msg and "\n" not in msg


def test_bare_key_in_a_nested_table_and_a_default_is_ambiguous(tmp_path):
    # [crawl.pagination] max_pages is in the file, run.max_pages only a default: neither may win silently
    with pytest.raises(ConfigError) as info:
        load(minimal(tmp_path, "\n[crawl.pagination]\nmax_pages = 50\n"), ["max_pages=5"])
    msg = str(info.value)
    assert "ambiguous" in msg and "crawl.pagination.max_pages" in msg and "run.max_pages" in msg


def test_bare_key_found_in_a_nested_table(tmp_path):
    cfg = load(minimal(tmp_path, '\n[crawl.pagination]\nnext = "a.next"\n'), ["next=a.more"])
    assert cfg.pagination.next == "a.more"


@pytest.mark.parametrize(("assignment", "fragment"), [
    ("nosuchkey=1", "no such setting"),
    ("fetch_threads", "expected key=value"),
    ("job.name=x", "not a table"),
    ("crawl.pages.kind=x", "not a table"),
])
def test_bad_overrides(assignment, fragment):
    with pytest.raises(ConfigError) as info:
        load(DEMO, [assignment])
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_override_does_not_touch_other_sections():
    raw = raw_of()
    before = copy.deepcopy(raw)
    apply_override(raw, "per_host=2", "x")
    assert raw["politeness"]["per_host"] == 2
    raw["politeness"]["per_host"] = before["politeness"]["per_host"]
    assert raw == before


# ---------------------------------------------------------------------------------------------- database URL


def test_env_database_url(monkeypatch):
    monkeypatch.setenv("ETL_DATABASE_URL", "sqlite:////tmp/from-env.db")
    assert load(DEMO).database_url == "sqlite:////tmp/from-env.db"


def test_database_url_argument_beats_env(monkeypatch):
    monkeypatch.setenv("ETL_DATABASE_URL", "sqlite:////tmp/from-env.db")
    assert load(DEMO, database_url="sqlite://").database_url == "sqlite://"


def test_empty_env_database_url_is_ignored(monkeypatch):
    monkeypatch.setenv("ETL_DATABASE_URL", "")
    assert load(DEMO).database_url == "sqlite:///etl.db"


def test_bad_env_database_url_is_a_config_error(monkeypatch):
    monkeypatch.setenv("ETL_DATABASE_URL", "oracle://u:secret@h/x")
    msg = config_error(str(DEMO))
    assert "[database].url" in msg and "secret" not in msg


def test_set_database_url_beats_env(monkeypatch):
    monkeypatch.setenv("ETL_DATABASE_URL", "sqlite:////tmp/from-env.db")
    assert load(DEMO, ["database.url=sqlite:////tmp/from-set.db"]).database_url == "sqlite:////tmp/from-set.db"


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql://user:secret@host/db", "postgresql://user:***@host/db"),
    ("postgresql+psycopg2://etl:s3cr%40t@db.example:5432/etl", "postgresql+psycopg2://etl:***@db.example:5432/etl"),
    ("postgresql://user:pa:ss@host/db", "postgresql://user:***@host/db"),
    ("postgresql://user@host/db", "postgresql://user@host/db"),
    ("postgresql://host/db", "postgresql://host/db"),
    ("sqlite:///etl.db", "sqlite:///etl.db"),
])
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_mask_url_with_empty_user_name():
    assert "secret" not in mask_url("postgresql://:secret@host/db")


# ---------------------------------------------------------------------------------------------- digest


def test_digest_ignores_the_database():
    a = load(DEMO, database_url="sqlite:///a.db")
    b = load(DEMO, database_url="postgresql://u:p@h/db")
    c = load(DEMO)
    assert a.digest == b.digest == c.digest
    assert len(a.digest) == 16 and int(a.digest, 16) >= 0


def test_digest_is_stable_across_loads():
    assert load(DEMO).digest == load(DEMO).digest


@pytest.mark.parametrize("override", ["fields.title.css=h1.main", "city=sh", "crawl.cap=100",
                                      "fields.extra=div.extra"])
def test_digest_changes_with_meaning(override):
    assert load(DEMO, [override]).digest != load(DEMO).digest


@pytest.mark.parametrize("override", ["run.fetch_threads=8", "run.engine=bs4", "run.parse_processes=1", "run.http=curl",
                                      "politeness.retries=2", "politeness.delay=0.01", "run.max_pages=5"])
def test_digest_ignores_how_fast_and_politely_pages_are_fetched(override):
    # resuming an interrupted run with more threads or a longer timeout must not start it over
    assert load(DEMO, [override]).digest == load(DEMO).digest


# ---------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("bad", [
    '\n[run]\nfetch_threads = "many"\n',
    '\n[run]\nhttp = "wget"\n',
    '\n[bogus]\nx = 1\n',
    'broken = { css = "a[" }\n',
])
def test_cli_bad_config_exits_2_with_one_error_line_and_no_database(tmp_path, capsys, bad):
    path = minimal(tmp_path, bad)
    db = tmp_path / "x.db"
    code = cli.main(["run", path, "--db", f"sqlite:///{db}", "--quiet"])
    assert code == cli.EXIT_CONFIG == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and path in lines[0]
    assert not db.exists()


def test_cli_missing_config_exits_2(tmp_path, capsys):
    db = tmp_path / "x.db"
    code = cli.main(["run", str(tmp_path / "missing.toml"), "--db", f"sqlite:///{db}"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no such config file" in err and "\n" not in err
    assert not db.exists()


def test_cli_bad_override_exits_2(tmp_path, capsys):
    db = tmp_path / "x.db"
    code = cli.main(["run", str(DEMO), "--set", "nosuchkey=1", "--db", f"sqlite:///{db}"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --set nosuchkey") and "\n" not in err
    assert not db.exists()


def test_any_scalar_in_source_is_a_placeholder_variable(tmp_path):
    cfg = load(minimal(tmp_path, replace=('city = "bj"', 'city = "bj"\nregion = "north"\nyear = 2024')),
               ["source.start_urls=['http://demo.test/{region}/{year}/']"])
    assert cfg.start_urls == ("http://demo.test/north/2024/",)


def test_a_source_key_close_to_a_known_one_is_a_typo_not_a_variable(tmp_path):
    msg = config_error(minimal(tmp_path, replace=('city = "bj"', 'city = "bj"\nallowed_domain = "demo.test"')))
    assert "allowed_domain" in msg and "did you mean 'allowed_domains'" in msg


def test_date_format_is_checked_on_load(tmp_path):
    cfg = load(minimal(tmp_path, '\n[fields.listed]\ncss = "span.d"\ntype = "date"\nformat = "%d/%m/%Y"\n'))
    assert cfg.fields["listed"].format == "%d/%m/%Y"
    msg = config_error(minimal(tmp_path, '\n[fields.listed]\ncss = "span.d"\nformat = "%d/%m/%Y"\n'))
    assert "[fields.listed].format" in msg and "only for type" in msg


@pytest.mark.parametrize("make", ["dev_zero", "fifo", "directory", "huge", "deep", "binary"])
def test_a_config_that_is_not_a_small_text_file_is_one_line(tmp_path, make):
    """Issue 12 item 14: /dev/zero read until memory ran out, a FIFO blocked forever, deep nesting recursed."""
    import os

    if make == "dev_zero":
        path = "/dev/zero"
    elif make == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
    elif make == "directory":
        path = str(tmp_path)
    elif make == "huge":
        path = str(tmp_path / "huge.toml")
        open(path, "w").write('job = "x"\n' + "# padding\n" * 200_000)
    elif make == "deep":
        path = str(tmp_path / "deep.toml")
        open(path, "w").write("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    else:
        path = str(tmp_path / "bin.toml")
        open(path, "wb").write(b"job = \"\xff\xfe\"\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert "\n" not in str(err.value) and str(err.value).startswith(path)


def test_the_http_engine_is_curl_unless_set(tmp_path):
    assert load(minimal(tmp_path)).run.http == "curl"
    assert load(DEMO, ["run.http=requests"]).run.http == "requests"
    assert load(DEMO, ["http=requests"]).run.http == "requests"  # a bare key: the one setting of that name


def test_curl_without_pycurl_is_a_config_error(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pycurl" else real(name, *a))
    with pytest.raises(ConfigError, match=r"\[run\]\.http: curl needs pycurl"):
        load(DEMO, ["run.http=curl"])
