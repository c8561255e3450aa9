"""The source interface: a source kind plans a run's first work and reads one unit of work into rows
and new work. Everything that differs between kinds lives behind it, in one module per kind.

    plan()                  coordinator, fresh run: the first work units (start URLs, key ranges, chunks)
    priority(request)       the frontier's order: 0 finish-first (details, ranges), 1 more of a list, 2 new
    reader(domains).read()  parse process: one unit (a fetched Page, or the Request itself when the
                            kind does not fetch over HTTP) → Parsed(rows, links, failures)

A kind's config section is checked by its own `check` (called by etl/config/build.py), so adding a kind
is one new module plus one line in etl/sources/__init__.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from etl.items import Parsed, Request
from etl.urls import split_credentials

if TYPE_CHECKING:
    from etl.config.checker import Checker
    from etl.config.model import Config


class Reader(Protocol):
    """Built once per parse process; reads units for the rest of that process's life."""

    def read(self, unit: Any) -> Parsed: ...


class Source(ABC):
    name: ClassVar[str]  # the `[source] type` it answers to
    keys: ClassVar[frozenset[str]] = frozenset()  # keys of [source] it reads (besides type, site, demo)
    fetches: ClassVar[bool] = True  # its units go through the HTTP fetch stage
    unit: ClassVar[str] = "pages"  # what a unit is called in the run summary
    full: bool = False  # `etl run --full`: a kind that reads incrementally (sql) plans every row instead

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        # where the site is: the demo server's address once started, else the config's `base_url`
        # (from [source] or --set), recorded in runs.params
        configured = cfg.vars.get("base_url")
        self.base_url: str | None = None
        if isinstance(configured, str) and "{" not in configured:
            self.base_url = split_credentials(configured)[0]  # a password in it is not recorded

    def credentials(self) -> dict[str, tuple[str, str]]:
        """origin → (user, password) the fetcher sends as Basic auth (from start URLs' userinfo)."""
        return {}

    # ------------------------------------------------------------------------- config (class level)
    @classmethod
    @abstractmethod
    def check(cls, source: dict[str, Any], raw: dict[str, Any], ck: Checker,
              variables: dict[str, Any]) -> tuple[Any, tuple[str, ...]]:
        """Check this kind's part of the config: returns (its settings object, start URLs)."""

    @classmethod  # noqa: B027 - an optional hook
    def validate(cls, cfg: Config, ck: Checker) -> None:
        """Rules across sections, once the whole config is built (raise ck.fail(...) to refuse)."""

    @staticmethod
    def check_text_fields(cfg: Config, ck: Checker, known: set[str] | None) -> None:
        """The stock matcher reads [transform] text_fields: each must be a field this source gives
        (`known`; None when the source cannot know its names before reading)."""
        given = "text_fields" in (cfg.raw.get("transform") or {})  # the default reads what exists of title, body
        if cfg.transform.type != "stock_mentions" or known is None or not given:
            return
        unknown = [f for f in cfg.transform.text_fields if f not in known]
        if unknown:
            raise ck.fail("[transform].text_fields", f"{', '.join(map(repr, unknown))} is not a field of this "
                                                     f"source (it gives {', '.join(sorted(known))})")

    # ------------------------------------------------------------------------- coordinator process
    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Before the run opens: start the bundled demo site, seed a demo table, download a file."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """After the run: stop what prepare started."""

    def unshareable(self) -> str | None:
        """Why several machines cannot share this source's run (etl worker), or None: e.g. something
        `prepare` starts for this process alone, which the other workers cannot reach."""
        return None

    def domains(self) -> tuple[str, ...]:
        """Hosts the fetch stage may touch (none for kinds that do not fetch)."""
        return ()

    @abstractmethod
    def plan(self, engine: Any) -> list[Request]:
        """A fresh run's first work units (`engine` is the target database's, for sources that read it)."""

    def priority(self, request: Request) -> int:
        return 0

    def urgent_kinds(self) -> tuple[str, ...]:
        """Kinds of unit read back from the database first when the frontier spilled."""
        return ()

    # ------------------------------------------------------------------------- parse process
    @abstractmethod
    def reader(self, domains: tuple[str, ...]) -> Reader:
        """The per-process reader (its extractor, its own database connection…)."""
