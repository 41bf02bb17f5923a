"""Test and benchmark helpers, never used by production code paths.

* ``testkit.loopback_exchange.LoopbackExchange``: a fake binance/bybit on 127.0.0.1
  (also a CLI: ``python -m testkit.loopback_exchange --help``);
* ``testkit.candles``: a seeded random-walk candle generator and CSV helpers.

Import the submodules directly (importing the server here would make
``python -m testkit.loopback_exchange`` load it twice).
"""
