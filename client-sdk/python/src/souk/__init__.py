"""souk's Python SDK: the Rust SDK's client (QUIC, certificate pinning,
retries with the same idempotency key, reconnects, token renewal) behind an
asyncio API generated with uniffi.

    import asyncio, souk

    async def main():
        client = await souk.SoukClient.connect(
            souk.ClientOptions(server="127.0.0.1:4433", pinned_sha256="…"), None)
        page = await client.browse(souk.BrowseCategory(
            sort=souk.BrowseSort.NAME_ASC, price=souk.PriceRange()))
        for product in page.products:
            print(product.name, product.price_from.minor_units, product.price_from.currency)

    asyncio.run(main())

Every call raises `souk.SoukError` and its variants (`SoukError.InsufficientStock`,
`SoukError.LimitExceeded`, ...). Money is integer minor units and a currency code.
"""

from ._bindings import *  # noqa: F401,F403
from ._bindings import __all__  # noqa: F401

import atexit as _atexit
import time as _time


@_atexit.register
def _let_callbacks_finish():
    # The native library completes each call by calling back into Python
    # from one of its own threads. A callback still on its way out when the
    # interpreter starts finalizing would find the GIL gone and the process
    # aborted; a moment with the GIL released here lets it return first.
    _time.sleep(0.05)
