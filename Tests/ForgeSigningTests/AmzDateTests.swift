import Foundation
import ForgeTestSupport
@testable import ForgeSigning
import Testing

@Suite struct AmzDateTests {
    @Test func roundTripsAndAgreesWithFoundation() throws {
        let date = try #require(AmzDate(parsing: "20150830T123600Z"))
        #expect(date.epochSeconds == 1_440_938_160)
        #expect(date.description == "20150830T123600Z")
        #expect(date.day == "20150830")
        var random = SplitMix64(seed: 7)
        for _ in 0..<2000 {
            let seconds = Int64(random.next() % 8_000_000_000)
            let stamp = AmzDate(Date(timeIntervalSince1970: TimeInterval(seconds)))
            #expect(AmzDate(parsing: stamp.description)?.epochSeconds == seconds, "\(seconds)")
        }
    }

    @Test(arguments: ["", "20150830T123600", "2015083OT123600Z", "20151330T123600Z", "20150830T253600Z", "20150830 123600Z", "+0150830T123600Z"])
    func rejects(_ text: String) {
        #expect(AmzDate(parsing: text) == nil)
    }
}
