// What one call through the Kotlin binding costs, beside what the call
// does: a synchronous call that only reads the client's state, then hello
// and product detail, one at a time and 32 in flight, in µs per call.
//
//   mvn -q test-compile exec:java -Dexec.mainClass=souk.sdk.bench.CallCostKt \
//     -Dexec.args="127.0.0.1:4433 <fingerprint>"
package souk.sdk.bench

import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import souk.sdk.BrowseCategory
import souk.sdk.BrowseSort
import souk.sdk.ClientOptions
import souk.sdk.PriceRange
import souk.sdk.SoukClient

const val CALLS_PER_ROUND = 20_000

fun main(args: Array<String>) = runBlocking {
    require(args.size == 2) { "usage: CallCost <host:port> <fingerprint>" }
    val client = SoukClient.connect(ClientOptions(server = args[0], pinnedSha256 = args[1]))
    val id = client.browse(BrowseCategory(sort = BrowseSort.NAME_ASC, price = PriceRange(), limit = 1u)).products[0].id

    // The last of three rounds: the first two warm the JIT.
    suspend fun measure(name: String, inFlight: Int, call: suspend () -> Unit) {
        var microsPerCall = 0.0
        repeat(3) {
            val started = System.nanoTime()
            val jobs = List(inFlight) {
                launch(Dispatchers.Default) { repeat(CALLS_PER_ROUND / inFlight) { call() } }
            }
            jobs.forEach { it.join() }
            microsPerCall = (System.nanoTime() - started) / 1000.0 / CALLS_PER_ROUND
        }
        println("$name, $inFlight in flight: ${"%.1f".format(microsPerCall)} µs/call")
    }
    measure("session() (synchronous, no I/O)", 1) { client.session() }
    measure("hello", 1) { client.hello() }
    measure("hello", 32) { client.hello() }
    measure("getProduct", 1) { client.getProduct(id) }
    measure("getProduct", 32) { client.getProduct(id) }
    client.close()
}
