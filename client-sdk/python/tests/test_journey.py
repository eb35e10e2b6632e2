"""A shopper's journey through the Python SDK against a live souk: browse,
product detail, guest cart, register, login with cart merge, checkout
retried with its idempotency key after a dropped connection, order
history, and the typed errors an app handles."""

import asyncio
import uuid

import pytest

import souk
from conftest import ADMIN_EMAIL, ADMIN_PASSWORD

PASSWORD = "correct horse battery staple"


def fresh_email():
    return f"py-{uuid.uuid4().hex[:12]}@example.org"


class MemorySessionStore(souk.SessionStore):
    """What an app does with its keychain, in memory."""

    def __init__(self, session=None):
        self.session = session
        self.saves = []

    def load(self):
        return self.session

    def save(self, session):
        self.session = session
        self.saves.append(session)


async def first_in_stock_sku(client):
    page = await client.browse(souk.BrowseCategory(sort=souk.BrowseSort.NAME_ASC, price=souk.PriceRange()))
    for summary in page.products:
        product = await client.get_product(summary.id)
        for variant in product.variants:
            if variant.available >= 10:
                return product, variant
    raise AssertionError("the demo catalog has no SKU with 10 in stock")


async def test_browse_and_product_detail(options):
    client = await souk.SoukClient.connect(options)
    hello = await client.hello()
    assert hello.shard_count == 2

    categories = await client.list_categories()
    assert categories, "the demo catalog has categories"

    page = await client.browse(souk.BrowseCategory(sort=souk.BrowseSort.PRICE_ASC, price=souk.PriceRange(), limit=5))
    assert 0 < len(page.products) <= 5
    prices = [summary.price_from.minor_units for summary in page.products]
    assert prices == sorted(prices)
    assert all(isinstance(price, int) for price in prices)

    product = await client.get_product(page.products[0].id)
    assert product.id == page.products[0].id
    assert product.variants
    assert product.variants[0].price.currency == page.products[0].price_from.currency
    assert isinstance(product.variants[0].stock_status, souk.StockStatus)


async def test_guest_cart_register_login_merge_checkout_history(options):
    shopper = await souk.SoukClient.connect(options)
    product, variant = await first_in_stock_sku(shopper)

    # A guest fills a cart before having an account.
    device = souk.new_device_id()
    cart = await shopper.add_to_cart(device, variant.sku, 2)
    assert cart.item_count == 2
    assert cart.lines[0].line_total.minor_units == 2 * variant.price.minor_units

    # The account is made elsewhere (another device), then the guest signs
    # in here: the guest cart joins the account's.
    email = fresh_email()
    other_device = await souk.SoukClient.connect(options)
    grant = await other_device.register(email, PASSWORD, "Py Thon")
    assert grant.refresh_token
    store = MemorySessionStore()
    signed_in = await souk.SoukClient.connect(options, store)
    await signed_in.login(email, PASSWORD, device)
    assert store.session is not None and store.session.user_id == grant.user_id
    merged = await signed_in.get_cart(None)
    assert [(line.sku, line.quantity) for line in merged.lines] == [(variant.sku, 2)]

    # The connection drops while the checkout is in flight: the SDK carries
    # it over to a new connection with its key. The app, unsure, tries again
    # with the same key too, and gets the same order, not a second one.
    key = souk.new_idempotency_key()
    in_flight = asyncio.ensure_future(signed_in.checkout(souk.Checkout(payment_method_token="pm_tok_visa"), key))
    await asyncio.sleep(0)
    await signed_in.disconnect()
    order = await in_flight
    assert order.total.minor_units == 2 * variant.price.minor_units
    again = await signed_in.checkout(souk.Checkout(payment_method_token="pm_tok_visa"), key)
    assert again.id == order.id

    history = await signed_in.list_orders()
    assert [listed.id for listed in history.orders] == [order.id]
    fetched = await signed_in.get_order(order.id)
    assert fetched.lines[0].sku == variant.sku
    assert fetched.status in (souk.OrderStatus.PENDING_PAYMENT, souk.OrderStatus.PAID)

    # The app restarts: its store resumes the session without a password.
    restarted = await souk.SoukClient.connect(options, MemorySessionStore(store.session))
    profile = await restarted.profile()
    assert profile.email == email

    await signed_in.logout()
    assert store.session is None


async def test_the_store_gets_each_renewal_and_loses_a_refused_session(options):
    email = fresh_email()
    grant = await (await souk.SoukClient.connect(options)).register(email, PASSWORD)

    # Saved by an earlier run whose access token has since expired: the SDK
    # renews with the refresh token, which rotates it, and the store gets
    # the new session before connect returns.
    expired = souk.SessionGrant(user_id=grant.user_id, role=grant.role, access_token="expired",
                                access_expires_at=grant.access_expires_at, refresh_token=grant.refresh_token)
    store = MemorySessionStore(expired)
    resumed = await souk.SoukClient.connect(options, store)
    assert store.session is not None
    assert store.session.refresh_token != grant.refresh_token
    assert store.saves == [store.session]
    assert resumed.session() == store.session
    assert (await resumed.profile()).email == email

    # A session the server no longer honours is cleared, and the client
    # goes on as a guest.
    revoked = souk.SessionGrant(user_id=grant.user_id, role=grant.role, access_token="expired",
                                access_expires_at=grant.access_expires_at, refresh_token="revoked")
    dead = MemorySessionStore(revoked)
    guest = await souk.SoukClient.connect(options, dead)
    assert dead.saves == [None]
    assert guest.session() is None
    with pytest.raises(souk.SoukError.Unauthenticated):
        await guest.profile()


async def test_typed_errors(options):
    client = await souk.SoukClient.connect(options)

    # Bad input is refused before it is sent.
    with pytest.raises(souk.SoukError.BadRequest):
        await client.get_product("not an id")
    with pytest.raises(souk.SoukError.BadRequest):
        await client.checkout(souk.Checkout(payment_method_token="pm_tok_visa"), "not-a-key")
    with pytest.raises(souk.SoukError.NotFound):
        await client.get_product("NO-SUCH-PRODUCT")

    # Sold out: one unit left, two asked for.
    admin = await souk.SoukClient.connect(options)
    await admin.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    _, variant = await first_in_stock_sku(admin)
    level = await admin.admin_restock(variant.sku, 1, souk.RestockMode.SET)
    assert level.available == 1
    buyer = await souk.SoukClient.connect(options)
    await buyer.register(fresh_email(), PASSWORD)
    line = souk.CheckoutLine(sku=variant.sku, quantity=2)
    with pytest.raises(souk.SoukError.InsufficientStock):
        await buyer.checkout(souk.Checkout(payment_method_token="pm_tok_visa", lines=[line]),
                             souk.new_idempotency_key())
    await admin.admin_restock(variant.sku, 100, souk.RestockMode.SET)

    # Rate limited: sign-in attempts against one account run out.
    email = fresh_email()
    await (await souk.SoukClient.connect(options)).register(email, PASSWORD)
    guesser = await souk.SoukClient.connect(options)
    limited = None
    for _ in range(20):
        try:
            await guesser.login(email, "wrong password")
        except souk.SoukError.Unauthenticated:
            continue
        except souk.SoukError.LimitExceeded as error:
            limited = error
            break
    assert limited is not None, "twenty wrong passwords were never limited"
    assert limited.retry_after_ms > 0


async def test_a_cancelled_call_leaves_the_client_working(options):
    client = await souk.SoukClient.connect(options)
    page = await client.browse(souk.BrowseCategory(sort=souk.BrowseSort.NAME_ASC, price=souk.PriceRange()))
    call = asyncio.ensure_future(client.get_product(page.products[0].id))
    await asyncio.sleep(0)  # the call is in the SDK now, not only scheduled
    assert not call.done()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    product = await client.get_product(page.products[0].id)
    assert product.id == page.products[0].id


async def test_a_wrong_pin_is_refused(server):
    wrong = "00" * 32
    options = souk.ClientOptions(server=server.address, pinned_sha256=wrong, retry_attempts=1)
    with pytest.raises((souk.SoukError.Transport, souk.SoukError.Timeout)):
        await souk.SoukClient.connect(options)
    with pytest.raises(souk.SoukError.Config):
        await souk.SoukClient.connect(souk.ClientOptions(server=server.address))
