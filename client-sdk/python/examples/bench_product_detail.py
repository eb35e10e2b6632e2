"""Product detail from Python: one connection, a fixed number of calls in
flight, for a fixed time; prints calls/s and latency percentiles as one
JSON line. bench/sdk_compare.sh runs it beside the Rust SDK and Kotlin.

    python3 examples/bench_product_detail.py 127.0.0.1:4433 <fingerprint> 10 32"""

import asyncio
import json
import sys
import time

import souk


async def bench(server, fingerprint, seconds, in_flight):
    client = await souk.SoukClient.connect(souk.ClientOptions(server=server, pinned_sha256=fingerprint))
    page = await client.browse(souk.BrowseCategory(sort=souk.BrowseSort.NAME_ASC, price=souk.PriceRange(), limit=100))
    ids = [summary.id for summary in page.products]
    warmup_calls = 1000
    for n in range(warmup_calls):
        await client.get_product(ids[n % len(ids)])

    latencies = []
    until = time.perf_counter() + seconds

    async def worker(n):
        while time.perf_counter() < until:
            started = time.perf_counter()
            await client.get_product(ids[n % len(ids)])
            latencies.append(time.perf_counter() - started)
            n += in_flight

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(in_flight)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def percentile_us(p):
        return int(latencies[int((len(latencies) - 1) * p)] * 1e6)

    print(json.dumps({"client": "python", "warmup_calls": warmup_calls, "calls": len(latencies), "calls_per_s": int(len(latencies) / elapsed),
                      "p50_us": percentile_us(0.50), "p99_us": percentile_us(0.99)}))


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit("usage: bench_product_detail.py <host:port> <fingerprint> <seconds> <in flight>")
    asyncio.run(bench(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
