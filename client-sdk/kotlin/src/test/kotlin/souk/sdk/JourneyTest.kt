package souk.sdk

import java.util.UUID
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.async
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance

/**
 * A shopper's journey through the Kotlin SDK against a live souk: browse,
 * product detail, guest cart, register, login with cart merge, checkout
 * retried with its idempotency key after a dropped connection, order
 * history, and the typed errors an app handles.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class JourneyTest {
    private lateinit var server: LiveServer

    @BeforeAll
    fun start() {
        server = LiveServer.start()
    }

    @AfterAll
    fun stop() {
        if (::server.isInitialized) server.close()
    }

    private fun freshEmail() = "kt-${UUID.randomUUID().toString().take(12)}@example.org"

    private suspend fun connect(store: SessionStore? = null) = SoukClient.connect(server.options(), store)

    private suspend fun firstInStock(client: SoukClient): Variant {
        val page = client.browse(BrowseCategory(sort = BrowseSort.NAME_ASC, price = PriceRange()))
        for (summary in page.products) {
            client.getProduct(summary.id).variants.firstOrNull { it.available >= 10 }?.let { return it }
        }
        error("the demo catalog has no SKU with 10 in stock")
    }

    @Test
    fun `browse and product detail`() = runBlocking {
        val client = connect()
        assertEquals(2.toUShort(), client.hello().shardCount)
        assertTrue(client.listCategories().isNotEmpty())

        val page = client.browse(BrowseCategory(sort = BrowseSort.PRICE_ASC, price = PriceRange(), limit = 5u))
        assertTrue(page.products.size in 1..5)
        val prices = page.products.map { it.priceFrom.minorUnits }
        assertEquals(prices.sorted(), prices)

        val product = client.getProduct(page.products[0].id)
        assertEquals(page.products[0].id, product.id)
        assertEquals(page.products[0].priceFrom.currency, product.variants[0].price.currency)
        client.close()
    }

    @Test
    fun `guest cart, login with merge, checkout retried after a dropped connection, history`() = runBlocking {
        val shopper = connect()
        val variant = firstInStock(shopper)
        val device = newDeviceId()
        val cart = shopper.addToCart(device, variant.sku, 2u)
        assertEquals(2u, cart.itemCount)
        assertEquals(2 * variant.price.minorUnits, cart.lines[0].lineTotal.minorUnits)

        // The account is made on another device; the guest then signs in
        // here and the guest cart joins the account's.
        val email = freshEmail()
        val grant = connect().register(email, PASSWORD, "Kot Lin")
        val store = MemorySessionStore()
        val signedIn = connect(store)
        signedIn.login(email, PASSWORD, device)
        assertEquals(grant.userId, store.session?.userId)
        val merged = signedIn.getCart(null)
        assertEquals(listOf(variant.sku to 2u), merged.lines.map { it.sku to it.quantity })

        // The connection drops while the checkout is in flight: the SDK
        // carries it over to a new connection with its key. The app, unsure,
        // tries again with the same key too, and gets the same order.
        val key = newIdempotencyKey()
        val inFlight = async(start = CoroutineStart.UNDISPATCHED) {
            signedIn.checkout(Checkout(paymentMethodToken = "pm_tok_visa"), key)
        }
        signedIn.disconnect()
        val order = inFlight.await()
        assertEquals(2 * variant.price.minorUnits, order.total.minorUnits)
        val again = signedIn.checkout(Checkout(paymentMethodToken = "pm_tok_visa"), key)
        assertEquals(order.id, again.id)

        assertEquals(listOf(order.id), signedIn.listOrders().orders.map { it.id })
        assertEquals(variant.sku, signedIn.getOrder(order.id).lines[0].sku)

        // The app restarts: its store resumes the session, no password.
        val restarted = connect(MemorySessionStore(store.session))
        assertEquals(email, restarted.profile().email)

        signedIn.logout()
        assertNull(store.session)
        listOf(shopper, signedIn, restarted).forEach { it.close() }
    }

    @Test
    fun `the store gets each renewal and loses a refused session`() = runBlocking {
        val email = freshEmail()
        val grant = connect().register(email, PASSWORD)

        // Saved by an earlier run whose access token has since expired: the
        // SDK renews, which rotates the refresh token, and the store has the
        // new session before connect returns.
        val store = MemorySessionStore(grant.copy(accessToken = "expired"))
        val resumed = connect(store)
        val renewed = store.session
        assertNotNull(renewed)
        assertTrue(renewed!!.refreshToken != grant.refreshToken)
        assertEquals(listOf(renewed), store.saves)
        assertEquals(renewed, resumed.session())
        assertEquals(email, resumed.profile().email)

        // A session the server no longer honours is cleared; the client
        // goes on as a guest.
        val dead = MemorySessionStore(grant.copy(accessToken = "expired", refreshToken = "revoked"))
        val guest = connect(dead)
        assertEquals(listOf<SessionGrant?>(null), dead.saves)
        assertNull(guest.session())
        assertThrows(SoukException.Unauthenticated::class.java) { runBlocking { guest.profile() } }
        listOf(resumed, guest).forEach { it.close() }
    }

    @Test
    fun `typed errors for bad input, sold out and rate limits`() = runBlocking {
        val client = connect()
        assertThrows(SoukException.BadRequest::class.java) { runBlocking { client.getProduct("not an id") } }
        assertThrows(SoukException.BadRequest::class.java) {
            runBlocking { client.checkout(Checkout(paymentMethodToken = "pm_tok_visa"), "not-a-key") }
        }
        assertThrows(SoukException.NotFound::class.java) { runBlocking { client.getProduct("NO-SUCH-PRODUCT") } }

        val admin = connect()
        admin.login(LiveServer.ADMIN_EMAIL, LiveServer.ADMIN_PASSWORD)
        val variant = firstInStock(admin)
        assertEquals(1L, admin.adminRestock(variant.sku, 1, RestockMode.SET).available)
        val buyer = connect()
        buyer.register(freshEmail(), PASSWORD)
        val buyTwo = Checkout(paymentMethodToken = "pm_tok_visa", lines = listOf(CheckoutLine(variant.sku, 2u)))
        assertThrows(SoukException.InsufficientStock::class.java) {
            runBlocking { buyer.checkout(buyTwo, newIdempotencyKey()) }
        }
        admin.adminRestock(variant.sku, 100, RestockMode.SET)

        val email = freshEmail()
        connect().register(email, PASSWORD)
        val guesser = connect()
        var limited: SoukException.LimitExceeded? = null
        for (attempt in 1..20) {
            try {
                guesser.login(email, "wrong password")
            } catch (wrong: SoukException.Unauthenticated) {
                continue
            } catch (error: SoukException.LimitExceeded) {
                limited = error
                break
            }
        }
        assertNotNull(limited, "twenty wrong passwords were never limited")
        assertTrue(limited!!.retryAfterMs > 0u)
    }

    @Test
    fun `a cancelled call leaves the client working`() = runBlocking {
        val client = connect()
        val id = client.browse(BrowseCategory(sort = BrowseSort.NAME_ASC, price = PriceRange())).products[0].id
        val call = async(start = CoroutineStart.UNDISPATCHED) { client.getProduct(id) }
        call.cancel()
        assertThrows(CancellationException::class.java) { runBlocking { call.await() } }
        assertEquals(id, client.getProduct(id).id)
    }

    @Test
    fun `a wrong pin is refused`() = runBlocking {
        val wrong = server.options(retryAttempts = 1u).copy(pinnedSha256 = "00".repeat(32))
        val refused = assertThrows(SoukException::class.java) { runBlocking { SoukClient.connect(wrong) } }
        assertTrue(refused is SoukException.Transport || refused is SoukException.Timeout, refused.toString())
        assertThrows(SoukException.Config::class.java) {
            runBlocking { SoukClient.connect(ClientOptions(server = server.address)) }
        }
        Unit
    }

    companion object {
        const val PASSWORD = "correct horse battery staple"
    }
}
