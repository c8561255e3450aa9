"""Chinese A-share stock dictionary and fast mention matching for news articles."""

from etl.stocks.dictionary import Stock, load_stocks
from etl.stocks.matcher import StockMatcher

__all__ = ["Stock", "StockMatcher", "load_stocks"]
