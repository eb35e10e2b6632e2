package souk.sdk

import java.io.File
import java.nio.file.Files
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import org.junit.jupiter.api.Assertions.fail
import org.junit.jupiter.api.Assumptions.assumeTrue

/**
 * A real souk server for the tests: a temporary data directory with an
 * admin account, `souk serve` on free ports, and the certificate
 * fingerprint read from its banner, as an app would pin it.
 *
 * The binary is the `souk.bin` system property (the pom points it at the
 * workspace's debug build). Under SOUK_REQUIRE_ALL_TESTS=1 (CI) a missing
 * binary fails the tests instead of skipping them.
 */
class LiveServer private constructor(
    val address: String,
    val fingerprint: String,
    private val dataDir: File,
    private val process: Process,
) : AutoCloseable {
    fun options(retryAttempts: UInt = 4u) = ClientOptions(
        server = address,
        pinnedSha256 = fingerprint,
        retryAttempts = retryAttempts,
        clientName = "souk-kotlin-tests",
    )

    override fun close() {
        process.destroy()
        if (!process.waitFor(10, TimeUnit.SECONDS)) process.destroyForcibly().waitFor()
        dataDir.deleteRecursively()
    }

    companion object {
        const val ADMIN_EMAIL = "admin@shop.example"
        const val ADMIN_PASSWORD = "admin-password-for-tests"

        private val requireAll = System.getenv("SOUK_REQUIRE_ALL_TESTS").let { it != null && it != "" && it != "0" }

        private fun binary(): File {
            val path = File(System.getProperty("souk.bin") ?: "../../target/debug/souk")
            if (!path.isFile) {
                val reason = "no souk binary at $path (cargo build -p souk-server, or -Dsouk.bin=...)"
                if (requireAll) fail<Unit>("SOUK_REQUIRE_ALL_TESTS=1 and $reason")
                assumeTrue(false, reason)
            }
            return path
        }

        fun start(demoProducts: Int = 40): LiveServer {
            val binary = binary()
            val dataDir = Files.createTempDirectory("souk-kotlin-test-").toFile()
            val common = listOf("--data-dir", dataDir.path, "--pin-threads", "false", "--log", "warn")
            val admin = ProcessBuilder(listOf(binary.path, "create-admin") + common + listOf("--email", ADMIN_EMAIL))
                .redirectErrorStream(true)
                .start()
            admin.outputStream.use { it.write("$ADMIN_PASSWORD\n".toByteArray()) }
            val adminOutput = admin.inputStream.bufferedReader().readText()
            check(admin.waitFor() == 0) { "souk create-admin failed: $adminOutput" }

            val process = ProcessBuilder(
                listOf(binary.path, "serve") + common + listOf(
                    "--listen", "127.0.0.1:0", "--http-listen", "off",
                    "--shards", "2", "--demo-products", demoProducts.toString(),
                ),
            ).redirectErrorStream(true).start()
            val lines = LinkedBlockingQueue<String>()
            Thread {
                process.inputStream.bufferedReader().forEachLine { lines.put(it) }
                lines.put(END)
            }.apply { isDaemon = true }.start()

            var address: String? = null
            var fingerprint: String? = null
            val seen = mutableListOf<String>()
            while (address == null || fingerprint == null) {
                val line = lines.poll(60, TimeUnit.SECONDS)
                if (line == null || line == END) {
                    process.destroyForcibly()
                    error("souk was not ready: $seen")
                }
                seen += line
                if (line.startsWith("souk listening on ")) address = line.split(" ")[3]
                if (line.startsWith("certificate SHA-256 fingerprint: ")) fingerprint = line.substringAfterLast(' ')
            }
            return LiveServer(address, fingerprint, dataDir, process)
        }

        private const val END = "\u0000end"
    }
}

/** What an app does with its keystore, in memory. */
class MemorySessionStore(var session: SessionGrant? = null) : SessionStore {
    val saves = mutableListOf<SessionGrant?>()

    override fun load(): SessionGrant? = session

    override fun save(session: SessionGrant?) {
        this.session = session
        saves += session
    }
}
