// Product detail from Kotlin: one connection, a fixed number of calls in
// flight, for a fixed time; prints calls/s and latency percentiles as one
// JSON line. bench/sdk_compare.sh runs it beside the Rust SDK and Python.
//
//   mvn -q test-compile exec:java -Dexec.mainClass=souk.sdk.bench.ProductDetailKt \
//     -Dexec.args="127.0.0.1:4433 <fingerprint> 10 32"
package souk.sdk.bench

import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import souk.sdk.BrowseCategory
import souk.sdk.BrowseSort
import souk.sdk.ClientOptions
import souk.sdk.PriceRange
import souk.sdk.SoukClient

/** Calls before the timed run, so that the JIT has compiled the call path. */
const val WARMUP_CALLS = 20_000

fun main(args: Array<String>) = runBlocking {
    require(args.size == 4) { "usage: ProductDetail <host:port> <fingerprint> <seconds> <in flight>" }
    val seconds = args[2].toLong()
    val inFlight = args[3].toInt()
    val client = SoukClient.connect(ClientOptions(server = args[0], pinnedSha256 = args[1]))
    val ids = client.browse(BrowseCategory(sort = BrowseSort.NAME_ASC, price = PriceRange(), limit = 100u))
        .products.map { it.id }

    suspend fun run(until: Long, latencies: MutableList<Long>?, worker: Int) {
        var n = worker
        while (System.nanoTime() < until) {
            val started = System.nanoTime()
            client.getProduct(ids[n % ids.size])
            latencies?.add(System.nanoTime() - started)
            n += inFlight
        }
    }

    val warmupEnd = System.nanoTime() + 5_000_000_000L
    var warmed = 0
    while (warmed < WARMUP_CALLS && System.nanoTime() < warmupEnd) {
        client.getProduct(ids[warmed % ids.size])
        warmed++
    }

    val perWorker = List(inFlight) { ArrayList<Long>(1 shl 16) }
    val started = System.nanoTime()
    val until = started + seconds * 1_000_000_000L
    val jobs = List(inFlight) { worker -> launch(Dispatchers.Default) { run(until, perWorker[worker], worker) } }
    jobs.forEach { it.join() }
    val elapsed = (System.nanoTime() - started) / 1e9
    val all = perWorker.flatten().sorted()
    fun percentileUs(p: Double) = all[((all.size - 1) * p).toInt()] / 1000
    println(
        """{"client":"kotlin","warmup_calls":$warmed,"calls":${all.size},"calls_per_s":${(all.size / elapsed).toLong()},""" +
            """"p50_us":${percentileUs(0.50)},"p99_us":${percentileUs(0.99)}}""",
    )
    client.close()
}
