package souk.sdk

import java.io.ByteArrayOutputStream
import java.io.PrintStream
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/** The example a developer copies still works against a live server. */
class ShopperExampleTest {
    @Test
    fun `the command-line shopper orders`() {
        LiveServer.start().use { server ->
            val captured = ByteArrayOutputStream()
            val original = System.out
            System.setOut(PrintStream(captured, true))
            try {
                souk.sdk.examples.main(arrayOf(server.address, server.fingerprint))
            } finally {
                System.setOut(original)
            }
            val output = captured.toString()
            assertTrue(Regex("order \\d+: (PENDING_PAYMENT|PAID), ").containsMatchIn(output), output)
        }
    }
}
