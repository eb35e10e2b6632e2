// A small command-line shopper: browse, look at a product, fill a guest
// cart, sign up (the guest cart joins the account) and order.
//
//   mvn -q test-compile exec:java -Dexec.args="127.0.0.1:4433 <fingerprint>"
//
// The fingerprint is the one `souk` prints at start.
package souk.sdk.examples

import java.util.UUID
import kotlinx.coroutines.runBlocking
import souk.sdk.BrowseCategory
import souk.sdk.BrowseSort
import souk.sdk.Checkout
import souk.sdk.ClientOptions
import souk.sdk.Money
import souk.sdk.PriceRange
import souk.sdk.SoukClient
import souk.sdk.SoukException
import souk.sdk.newDeviceId
import souk.sdk.newIdempotencyKey

fun formatMoney(money: Money): String {
    val sign = if (money.minorUnits < 0) "-" else ""
    val units = Math.abs(money.minorUnits)
    return "$sign${units / 100}.${(units % 100).toString().padStart(2, '0')} ${money.currency}"
}

fun main(args: Array<String>) = runBlocking {
    require(args.size == 2) { "usage: Shopper <host:port> <certificate SHA-256 fingerprint>" }
    val client = SoukClient.connect(ClientOptions(server = args[0], pinnedSha256 = args[1]))
    client.use {
        val page = client.browse(BrowseCategory(sort = BrowseSort.PRICE_ASC, price = PriceRange(), limit = 5u))
        println("${page.total} products; the cheapest:")
        page.products.forEach { println("  ${it.name}: from ${formatMoney(it.priceFrom)}") }

        val product = client.getProduct(page.products.first().id)
        val variant = product.variants.first { it.available > 0 }
        val device = newDeviceId()
        val cart = client.addToCart(device, variant.sku, 1u)
        println("cart: ${cart.itemCount} item(s), ${cart.subtotal?.let(::formatMoney)}")

        val email = "shopper-${UUID.randomUUID().toString().take(8)}@example.org"
        client.register(email, "a long enough password", "Kotlin Shopper")
        client.mergeCart(device)

        // Keep the key until the outcome is known: retrying with it can
        // never order twice.
        val key = newIdempotencyKey()
        val order = try {
            client.checkout(Checkout(paymentMethodToken = "pm_tok_visa"), key)
        } catch (soldOut: SoukException.InsufficientStock) {
            println("sold out: ${soldOut.detail}")
            return@use
        }
        println("order ${order.id}: ${order.status}, ${formatMoney(order.total)}")
    }
}
