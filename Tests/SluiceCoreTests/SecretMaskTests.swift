import Testing
@testable import SluiceCore

/// Secrets are masked where they stand whole, and words around them stay readable
/// (issue 21: a token `tok` turned "Invalid token" into "Invalid [REDACTED]en").
@Suite struct SecretMaskTests {
    @Test func aSecretInsideAWordIsLeftAlone() {
        #expect(SecretMask(["oken"])("Invalid token (code 4)") == "Invalid token (code 4)")
        #expect(SecretMask(["abcd"])("xabcd abcdx abcd_1 1-abcd") == "xabcd abcdx abcd_1 1-abcd")
    }

    @Test func aWholeSecretIsMaskedWhereverItStands() {
        let token = "11111111-2222-3333-4444-555555555555"
        let mask = SecretMask([token])
        #expect(mask("token \(token) is disabled") == "token [REDACTED] is disabled")
        #expect(mask("Splunk \(token)") == "Splunk [REDACTED]")
        #expect(mask("\"\(token)\",\(token);https://h/?t=\(token)") == "\"[REDACTED]\",[REDACTED];https://h/?t=[REDACTED]")
        #expect(mask(token) == "[REDACTED]")
    }

    @Test func shortValuesAreNotMasked() {
        // Three letters match ordinary words far more often than they leak a secret.
        #expect(SecretMask(["tok"])("Invalid tok token") == "Invalid tok token")
        #expect(SecretMask(["tok"]).isEmpty)
        #expect(SecretMask(["tok1"])("Invalid tok1 token") == "Invalid [REDACTED] token")
    }

    @Test func aSecretEndingInPunctuationIsMaskedBeforeAWord() {
        // Base64 padding is not a word character: "…==x" still shows the whole value.
        #expect(SecretMask(["c2VjcmV0=="])("key c2VjcmV0==x") == "key [REDACTED]x")
    }

    @Test func theLongerOfTwoOverlappingSecretsIsMaskedWhole() {
        #expect(SecretMask(["abcd", "abcd efgh"])("got abcd efgh and abcd") == "got [REDACTED] and [REDACTED]")
    }

    @Test func headerCredentialsAreSecretsWithAndWithoutTheirScheme() {
        let secrets = Set(SecretMask.secrets(inHeaders: ["Authorization": "Bearer s3cr3t-v4lue", "X-API-Key": "k3y-value", "X-Scope": "tenant-1"]))
        #expect(secrets == ["Bearer s3cr3t-v4lue", "s3cr3t-v4lue", "k3y-value"])
        #expect(SecretMask(secrets)("401: bad credential s3cr3t-v4lue for tenant-1") == "401: bad credential [REDACTED] for tenant-1")
    }

    @Test func secretNamesAreRecognised() {
        #expect(SecretMask.isSecretName("Authorization") && SecretMask.isSecretName("dd-api-key") && SecretMask.isSecretName("hec_token"))
        #expect(!SecretMask.isSecretName("exporter") && !SecretMask.isSecretName("reason"))
    }
}

@Suite struct DestinationTextTests {
    @Test func secretsAreMaskedBeforeTheTextIsCut() {
        let mask = SecretMask(["tok-0123456789abcdef"])
        // The cut falls inside the token: had it been cut first, "tok-0123" would show.
        let text = String(repeating: "x", count: 20) + " Bearer tok-0123456789abcdef and more"
        let cleaned = mask.clean(text, limit: 29)
        #expect(!cleaned.contains("tok-0123"))
        #expect(cleaned.hasPrefix(String(repeating: "x", count: 20) + " Bearer [REDACTED]".prefix(9)))
        #expect(cleaned.hasSuffix("more characters)"))
    }

    @Test func oneLineAndBounded() {
        let cleaned = SecretMask([]).clean("a\nb\r\nc" + String(repeating: "y", count: 5000), limit: SecretMask.reasonLength)
        #expect(!cleaned.contains("\n") && !cleaned.contains("\r"))
        #expect(cleaned.count < SecretMask.reasonLength + 40)
        #expect(SecretMask([]).clean("short", limit: 10) == "short")
    }

    @Test func credentialHeadersUnderOtherNames() {
        let secrets = Set(SecretMask.secrets(inHeaders: ["X-Insert-Key": "k3y-value", "DD-API-KEY": "dd-value", "X-Auth": "a-value", "X-Scope": "tenant-1"]))
        #expect(secrets == ["k3y-value", "dd-value", "a-value"])
    }
}
