"""The demo site from day to day: day 0 is the generated site; each later day some listings change price,
some are new, some disappear and a few of those come back, as on a real portal between two crawls.

Day N is a function of (seed, city, size, N) only. Days are cumulative (day N is day N-1 plus day N's
events), each day's events drawn from ``random.Random(f"demo-day:{seed}:{city}:{N}")``, so building day N
costs one pass over N days of events (about 2% of the listings each) plus one re-index of the listings —
milliseconds for the default site, not N full regenerations.

A day's events, in this order, from the day before's state:
  relisted  a few listings removed on an earlier day come back under their old id (~0.04% of the site),
            half of them at a cut price; the listing's ``changed`` date becomes the day's date;
  removed   ~0.5% of the listings (plus as many as came back, so the site keeps its size): their detail
            pages answer 404 and they leave every list, facet count and the API;
  price     ~1% of the listings get a new total price (70% cuts, 1-8%); the unit price moves with it,
            recomputed as the site computes it (total / area, rounded to the yuan);
  new       ~0.5% new listings, listed on the day, with ids above every id so far (newest first).

``changes(a, b)`` compares two days' sites (snapshots, not an event log): a listing on day b but not on
day a is "new" if it was first listed after day a, else "relisted"; on day a but not b is "removed"; on
both with another total price is "price". A listing that went and came back between a and b at the same
price is no change at all.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from etl.demo.names import REF_DATE, CityModel, Listing, build_city, index_listings, make_listing, unit_price

if TYPE_CHECKING:
    from etl.demo.site import SiteOptions

MAX_DAY = 3650  # ten years of days; day N costs O(N) small steps
PRICE_RATE, NEW_RATE, REMOVED_RATE, BACK_RATE = 0.01, 0.005, 0.005, 0.0004
CHANGE_KINDS = ("new", "relisted", "removed", "price")


def check_day(value: Any) -> str | None:
    """Why `value` is not a usable day number, or None when it is (for config checks and the CLI)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected a whole number of days, got {value!r}"
    if not 0 <= value <= MAX_DAY:
        return f"must be from 0 (the generated site) to {MAX_DAY}, got {value}"
    return None


def day_date(day: int) -> dt.date:
    """The calendar date the site shows on `day` (day 0 is the generated site's reference date)."""
    return REF_DATE + dt.timedelta(days=day)


def _count(rng: random.Random, expected: float) -> int:
    """`expected` rounded up or down at random, so small sites still see the rates on average."""
    whole = int(expected)
    return whole + (rng.random() < expected - whole)


class _Pool:
    """Listings in insertion order with swap-removal: O(1) add, remove and pick by position."""

    def __init__(self, items: list[Listing]) -> None:
        self.items = items
        self.pos = {li.id: i for i, li in enumerate(items)}

    def __len__(self) -> int:
        return len(self.items)

    def add(self, li: Listing) -> None:
        self.pos[li.id] = len(self.items)
        self.items.append(li)

    def remove(self, li: Listing) -> None:
        i = self.pos.pop(li.id)
        last = self.items.pop()
        if last.id != li.id:
            self.items[i] = last
            self.pos[last.id] = i

    def sample(self, rng: random.Random, k: int) -> list[Listing]:
        return [self.items[i] for i in sorted(rng.sample(range(len(self.items)), min(k, len(self.items))))]


class _Days:
    """The running state: the listings on the site and those gone from it."""

    def __init__(self, base: CityModel, seed: int, cap: int) -> None:
        if base.gen is None:
            raise ValueError("the city model carries no generator parameters")
        self.base, self.seed, self.cap, self.gen = base, seed, cap, base.gen
        self.active = _Pool(list(base.listings))
        self.gone = _Pool([])
        self.per_sub = [len(ix) for ix in base.by_sub]
        self.next_id = max((li.id for li in base.listings), default=0) + 1
        self.floors: dict[str, str] = {}
        self.day = 0

    def _move(self, li: Listing, src: _Pool, dst: _Pool) -> None:
        src.remove(li)
        dst.add(li)
        self.per_sub[li.sub] += 1 if dst is self.active else -1

    def advance(self) -> None:
        """Apply the next day's events."""
        self.day += 1
        rng = random.Random(f"demo-day:{self.seed}:{self.base.city}:{self.day}")
        today = day_date(self.day).toordinal()
        active, n = self.active, len(self.active)
        back = self.gone.sample(rng, _count(rng, n * BACK_RATE))
        removed = active.sample(rng, _count(rng, n * REMOVED_RATE) + len(back))
        for li in removed:
            active.remove(li)
            self.per_sub[li.sub] -= 1
        for li in back:
            if self.per_sub[li.sub] < self.cap:
                price10 = _new_price(rng, li.price10, cut_only=True) if rng.random() < 0.5 else li.price10
                self._move(li, self.gone, active)
                active.items[-1] = _priced(li, price10, today)
        for li in removed:  # only now: what left today does not come back today
            self.gone.add(li)
        for li in active.sample(rng, _count(rng, n * PRICE_RATE)):
            active.items[active.pos[li.id]] = _priced(li, _new_price(rng, li.price10), today)
        for _ in range(_count(rng, n * NEW_RATE) if len(active) else 0):
            li = make_listing(rng, self.gen, self.next_id, self._pick_sub(rng), today, self.floors)
            active.add(li)
            self.per_sub[li.sub] += 1
            self.next_id += 1 + int(rng.random() * 9)

    def _pick_sub(self, rng: random.Random) -> int:
        """Where a new listing goes: where listings are (a random listing's sub-district), never past the cap a
        list can show, so a crawl walking the facets still reaches every listing."""
        sub = self.active.items[int(rng.random() * len(self.active))].sub
        if self.per_sub[sub] < self.cap:
            return sub
        return min(range(len(self.per_sub)), key=self.per_sub.__getitem__)

    def model(self) -> CityModel:
        """Today's site as a CityModel: everything but the listings is the generated city's."""
        listings = sorted(self.active.items, key=lambda li: li.id, reverse=True)
        ids_asc, by_district, by_sub = index_listings(listings, self.base.subs, len(self.base.districts))
        return dataclasses.replace(self.base, listings=listings, ids_asc=ids_asc, by_district=by_district,
                                   by_sub=by_sub, today=day_date(self.day).toordinal())


def _priced(li: Listing, price10: int, today: int) -> Listing:
    """A copy at another total price; the unit price follows as the site computes it."""
    return dataclasses.replace(li, price10=price10, unit=unit_price(price10, li.area), changed=today)


def _new_price(rng: random.Random, price10: int, cut_only: bool = False) -> int:
    """A moved total price (in 0.1 万), never the old one; a whole-万 price stays whole 万."""
    cut = cut_only or rng.random() < 0.7
    pct = rng.uniform(0.01, 0.08)
    step = 10 if price10 % 10 == 0 else 1
    new = max(10, round(price10 * (1 - pct if cut else 1 + pct) / step) * step)
    if new == price10:
        new = price10 - step if cut and price10 - step >= 10 else price10 + step
    return new


def day_models(base: CityModel, seed: int, cap: int, days: set[int]) -> dict[int, CityModel]:
    """The site on each of `days` (one pass up to the last of them)."""
    for day in days:
        if problem := check_day(day):
            raise ValueError(f"day {problem}")
    out = {0: base} if 0 in days else {}
    state = _Days(base, seed, cap)
    while state.day < max(days, default=0):
        state.advance()
        if state.day in days:
            out[state.day] = state.model()
    return out


def _price(li: Listing | None, attr: str) -> Any:
    if li is None:
        return None
    return Decimal(li.price10 * 1000) if attr == "total" else li.unit


def changes(before: CityModel, after: CityModel, before_day: int) -> list[dict[str, Any]]:
    """What differs between two days' sites, one dict per listing, id descending (the lists' order).

    Prices are the truth's: total_price a Decimal in yuan, unit_price an int in yuan/m2; None where the
    listing is not on that day's site."""
    old = {li.id: li for li in before.listings}
    new = {li.id: li for li in after.listings}
    cutoff = day_date(before_day).toordinal()
    rows = []
    for lid in sorted(old.keys() | new.keys(), reverse=True):
        a, b = old.get(lid), new.get(lid)
        if a is None:
            kind = "new" if b.listed > cutoff else "relisted"
        elif b is None:
            kind = "removed"
        elif a.price10 != b.price10:
            kind = "price"
        else:
            continue
        rows.append({"listing_id": str(lid), "city": after.city, "change": kind,
                     "old_total_price": _price(a, "total"), "new_total_price": _price(b, "total"),
                     "old_unit_price": _price(a, "unit"), "new_unit_price": _price(b, "unit"),
                     "url": f"/{after.city}/ershoufang/{lid}.html"})
    return rows


def city_model(options: SiteOptions, city: str) -> CityModel:
    """The city as served on ``options.day``."""
    base = build_city(options, city)
    if options.day == 0:
        return base
    return day_models(base, options.seed, _cap(options), {options.day})[options.day]


def site_changes(options: SiteOptions, city: str, before: int, after: int) -> list[dict[str, Any]]:
    """``changes`` between day `before` and day `after` (not earlier) of the site `options` describe."""
    if before > after:
        raise ValueError(f"the first day ({before}) is after the second ({after})")
    models = day_models(build_city(options, city), options.seed, _cap(options), {before, after})
    return changes(models[before], models[after], before)


def _cap(options: SiteOptions) -> int:
    return max(1, options.max_pages * options.page_size)  # as build_city sizes the sub-districts
