"""A small shopper script: browse, look at a product, fill a guest cart,
sign up (the guest cart joins the account) and order.

    python3 examples/shopper.py 127.0.0.1:4433 <certificate fingerprint>

The fingerprint is the one `souk` prints at start."""

import asyncio
import sys
import uuid

import souk


def format_money(money):
    sign = "-" if money.minor_units < 0 else ""
    units = abs(money.minor_units)
    return f"{sign}{units // 100}.{units % 100:02d} {money.currency}"


async def shop(server, fingerprint):
    client = await souk.SoukClient.connect(souk.ClientOptions(server=server, pinned_sha256=fingerprint))
    page = await client.browse(souk.BrowseCategory(sort=souk.BrowseSort.PRICE_ASC, price=souk.PriceRange(), limit=5))
    print(f"{page.total} products; the cheapest:")
    for summary in page.products:
        print(f"  {summary.name}: from {format_money(summary.price_from)}")

    product = await client.get_product(page.products[0].id)
    variant = next(v for v in product.variants if v.available > 0)
    device = souk.new_device_id()
    cart = await client.add_to_cart(device, variant.sku, 1)
    print(f"cart: {cart.item_count} item(s), {format_money(cart.subtotal)}")

    await client.register(f"shopper-{uuid.uuid4().hex[:8]}@example.org", "a long enough password", "Python Shopper")
    await client.merge_cart(device)

    # Keep the key until the outcome is known: retrying with it can never
    # order twice.
    key = souk.new_idempotency_key()
    try:
        order = await client.checkout(souk.Checkout(payment_method_token="pm_tok_visa"), key)
    except souk.SoukError.InsufficientStock as sold_out:
        print(f"sold out: {sold_out}")
        return
    print(f"order {order.id}: {order.status.name}, {format_money(order.total)}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: shopper.py <host:port> <certificate SHA-256 fingerprint>")
    asyncio.run(shop(sys.argv[1], sys.argv[2]))
