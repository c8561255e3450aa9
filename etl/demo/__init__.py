"""Bundled lianjia-style demo listings portal: the default crawl target for tests, demos and benchmarks."""

from etl.demo.server import DemoServer, serve_forever
from etl.demo.site import DemoSite, SiteOptions

__all__ = ["DemoServer", "DemoSite", "SiteOptions", "serve_forever"]
