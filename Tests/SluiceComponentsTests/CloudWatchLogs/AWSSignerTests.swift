import Foundation
import Testing
@testable import SluiceComponents

/// Signature Version 4 against AWS's published test suite
/// (https://docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html):
/// credentials AKIDEXAMPLE, region us-east-1, service `service`, 20150830T123600Z.
@Suite struct AWSSignerTests {
    let signer = AWSSigner(region: "us-east-1", service: "service")
    let credentials = AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    /// 2015-08-30T12:36:00Z.
    let time: UInt64 = 1_440_938_160

    func authorization(_ method: String, _ path: String, query: String = "", _ headers: [(String, String)], body: String = "",
                       credentials: AWSCredentials? = nil) -> [(String, String)] {
        signer.sign(method: method, path: path, query: query, headers: headers, body: Array(body.utf8), credentials: credentials ?? self.credentials, epochSeconds: time)
    }

    func value(_ name: String, _ headers: [(String, String)]) -> String? { headers.first { $0.0 == name }?.1 }

    @Test func getVanilla() {
        let added = authorization("GET", "/", [("Host", "example.amazonaws.com")])
        #expect(value("X-Amz-Date", added) == "20150830T123600Z")
        #expect(value("Authorization", added) == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
        #expect(value("X-Amz-Security-Token", added) == nil)
    }

    @Test func postXWWWFormURLEncoded() {
        let added = authorization("POST", "/", [("Content-Type", "application/x-www-form-urlencoded"), ("Host", "example.amazonaws.com")], body: "Param1=value1")
        #expect(value("Authorization", added) == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a")
    }

    /// get-header-value-trim: values are trimmed and inner runs of spaces become one.
    @Test func headerValuesAreTrimmedAndNamesLowercased() {
        let added = authorization("GET", "/", [("Host", "example.amazonaws.com"), ("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")])
        #expect(value("Authorization", added) == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;my-header2;x-amz-date, Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736")
        #expect(AWSSigner.canonicalHeaders([("My-Header2", " \"a   b   c\"")]).canonical == "my-header2:\"a b c\"\n")
    }

    /// get-vanilla-query-order-key-case and get-vanilla-query-order-value: parameters sorted by name, then value.
    @Test func queryParametersAreSorted() {
        let byName = authorization("GET", "/", query: "Param2=value2&Param1=value1", [("Host", "example.amazonaws.com")])
        #expect(value("Authorization", byName)?.hasSuffix("Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500") == true)
        let byValue = authorization("GET", "/", query: "Param1=value2&Param1=Value1", [("Host", "example.amazonaws.com")])
        #expect(value("Authorization", byValue)?.hasSuffix("Signature=eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1") == true)
        #expect(AWSSigner.canonicalQuery("b=2&a=x y&a=%2F") == "a=%2F&a=x%20y&b=2")
    }

    /// Temporary credentials add their token as a signed header.
    @Test func aSessionTokenIsSentAndSigned() {
        var temporary = credentials
        temporary.sessionToken = "IQoJb3JpZ2luX2VjEPT//////////wEaCXVzLWVhc3QtMSJ="
        let added = authorization("POST", "/", [("Host", "logs.eu-west-1.amazonaws.com")], body: "{}", credentials: temporary)
        #expect(value("X-Amz-Security-Token", added) == temporary.sessionToken)
        #expect(value("Authorization", added)?.contains("SignedHeaders=host;x-amz-date;x-amz-security-token,") == true)
    }

    @Test func datesAreWrittenInUTC() {
        #expect(AWSSigner.amzDate(0) == "19700101T000000Z")
        #expect(AWSSigner.amzDate(951_825_599) == "20000229T115959Z")
        #expect(AWSSigner.uriEncode("a b/c~d-é") == "a%20b%2Fc~d-%C3%A9")
    }
}
