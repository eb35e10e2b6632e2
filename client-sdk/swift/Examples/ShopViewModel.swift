// A SwiftUI view model over the Souk package: the catalog, a product, the
// cart and checkout. Copy it into an app target that depends on "Souk".
import Foundation
import Security
import Souk
import SwiftUI

/// The session in the keychain: souk hands each change here and never
/// stores tokens itself.
final class KeychainSessionStore: SessionStore, @unchecked Sendable {
    private let account = "souk.session"

    func load() throws -> SessionGrant? {
        var query = baseQuery()
        query[kSecReturnData as String] = true
        var item: CFTypeRef?
        guard SecItemCopyMatching(query as CFDictionary, &item) == errSecSuccess,
              let data = item as? Data,
              let saved = try? JSONDecoder().decode(SavedSession.self, from: data) else { return nil }
        return saved.grant
    }

    func save(session: SessionGrant?) throws {
        SecItemDelete(baseQuery() as CFDictionary)
        guard let session else { return }
        var query = baseQuery()
        query[kSecValueData as String] = try JSONEncoder().encode(SavedSession(session))
        query[kSecAttrAccessible as String] = kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly
        let status = SecItemAdd(query as CFDictionary, nil)
        if status != errSecSuccess {
            throw SoukError.SessionStorage(detail: "keychain status \(status)")
        }
    }

    private func baseQuery() -> [String: Any] {
        [kSecClass as String: kSecClassGenericPassword, kSecAttrAccount as String: account]
    }
}

private struct SavedSession: Codable {
    let userId: UInt64, admin: Bool, accessToken: String, accessExpiresAt: UInt64, refreshToken: String
    init(_ grant: SessionGrant) {
        userId = grant.userId; admin = grant.role == .admin; accessToken = grant.accessToken
        accessExpiresAt = grant.accessExpiresAt; refreshToken = grant.refreshToken
    }
    var grant: SessionGrant {
        SessionGrant(userId: userId, role: admin ? .admin : .customer, accessToken: accessToken,
                     accessExpiresAt: accessExpiresAt, refreshToken: refreshToken)
    }
}

@MainActor
final class ShopViewModel: ObservableObject {
    @Published var products: [ProductSummary] = []
    @Published var cart: CartView?
    @Published var lastOrder: Order?
    @Published var problem: String?

    private var client: SoukClient?
    /// Made at first launch and kept: it keys the guest cart.
    private let deviceId = UserDefaults.standard.string(forKey: "souk.device") ?? {
        let id = newDeviceId()
        UserDefaults.standard.set(id, forKey: "souk.device")
        return id
    }()
    /// Kept until the order's outcome is known, so a retry never orders twice.
    private var pendingCheckoutKey: String?

    func start() async {
        do {
            let options = ClientOptions(server: "shop.example.com:4433",
                                        pinnedSha256: "<the fingerprint souk prints>")
            client = try await SoukClient.connect(options: options, sessionStore: KeychainSessionStore())
            let page = try await client!.browse(query: BrowseCategory(sort: .nameAsc, price: PriceRange()))
            products = page.products
        } catch {
            problem = "\(error)"
        }
    }

    func add(_ sku: String) async {
        guard let client else { return }
        do {
            cart = try await client.addToCart(deviceId: client.session() == nil ? deviceId : nil, sku: sku, quantity: 1)
        } catch SoukError.InsufficientStock(let detail) {
            problem = "Sold out: \(detail)"
        } catch {
            problem = "\(error)"
        }
    }

    func checkout(paymentMethodToken: String) async {
        guard let client else { return }
        let key = pendingCheckoutKey ?? newIdempotencyKey()
        pendingCheckoutKey = key
        do {
            lastOrder = try await client.checkout(checkout: Checkout(paymentMethodToken: paymentMethodToken),
                                                  idempotencyKey: key)
            pendingCheckoutKey = nil
        } catch SoukError.Transport, SoukError.Timeout, SoukError.Busy, SoukError.Unavailable,
                SoukError.Internal {
            // The outcome is unknown: keep the key, so that trying again
            // returns this order if it was placed, and never places two.
            problem = "Your order could not be confirmed yet: it is safe to try again."
        } catch {
            pendingCheckoutKey = nil
            problem = "\(error)"
        }
    }

    /// Money is integer minor units: format it, never divide into a float.
    static func format(_ money: Money) -> String {
        let formatter = NumberFormatter()
        formatter.numberStyle = .currency
        formatter.currencyCode = money.currency
        let amount = NSDecimalNumber(mantissa: money.minorUnits.magnitude,
                                     exponent: Int16(-formatter.maximumFractionDigits),
                                     isNegative: money.minorUnits < 0)
        return formatter.string(from: amount) ?? "\(money.minorUnits) \(money.currency)"
    }
}
