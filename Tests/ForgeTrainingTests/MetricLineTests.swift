// Tests of the metric line and metrics.json formats (CONVENTIONS.md, "Outputs"): fixed point
// with six decimals and never an exponent, and a flat JSON object that JSONSerialization reads.
import ForgeTraining
import Foundation
import Testing

@Suite struct MetricLineTests {
    @Test func lineFormatIsExact() {
        let line = MetricLine.format(epoch: 3, step: 420, metrics: [MetricValue("train:loss", 0.1234),
                                                                    MetricValue("validation:accuracy", 0.9712)])
        #expect(line == "epoch=3 step=420 train:loss=0.123400 validation:accuracy=0.971200")
        #expect(MetricLine.format(epoch: 1, step: 0, metrics: []) == "epoch=1 step=0")
    }

    @Test(arguments: [
        (1e-9, "0.000000"), (12_345_678.9, "12345678.900000"), (0, "0.000000"), (1, "1.000000"), (-0.5, "-0.500000"),
        (0.0000015, "0.000002"), (1e20, "100000000000000000000.000000"), (2.0 / 3.0, "0.666667"),
        (Double.nan, "nan"), (Double.infinity, "inf"), (-Double.infinity, "-inf"),
    ])
    func fixedPointNeverUsesAnExponent(value: Double, text: String) {
        #expect(MetricLine.fixed(value) == text)
    }

    @Test func lineMatchesTheDocumentedRegex() throws {
        let line = MetricLine.format(epoch: 12, step: 7, metrics: [MetricValue("train:loss", 3e-12), MetricValue("validation:mse", 4.5e7)])
        let regex = try Regex("^epoch=(\\d+) step=(\\d+) train:loss=([0-9.]+) validation:mse=([0-9.]+)$")
        let match = try #require(line.wholeMatch(of: regex))
        #expect(match.output[3].substring == "0.000000")
        #expect(match.output[4].substring == "45000000.000000")
    }

    @Test func jsonIsAFlatObjectOfNumbers() throws {
        let metrics = [MetricValue("validation:accuracy", 0.971234567), MetricValue("train:loss", 1e-9),
                       MetricValue("validation:loss", 12_345_678.9), MetricValue("validation:mse", .nan)]
        let text = MetricLine.json(metrics)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(Set(object.keys) == ["validation:accuracy", "train:loss", "validation:loss", "validation:mse"])
        let accuracy = try #require(object["validation:accuracy"] as? Double)
        #expect(abs(accuracy - 0.971234567) < 1e-8)
        let loss = try #require(object["train:loss"] as? Double)
        #expect(abs(loss - 1e-9) < 1e-16)
        let big = try #require(object["validation:loss"] as? Double)
        #expect(abs(big - 12_345_678.9) < 0.1)
        #expect(object["validation:mse"] is NSNull)
        // Keys sorted, one per line.
        #expect(text.split(separator: "\n").dropFirst().first?.contains("train:loss") == true)
        #expect(MetricLine.json([]) == "{\n\n}\n")
        #expect(try JSONSerialization.jsonObject(with: Data(MetricLine.json([]).utf8)) as? [String: Any] != nil)
    }
}
