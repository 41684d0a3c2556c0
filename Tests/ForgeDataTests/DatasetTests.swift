// Tests of Dataset: rows, subsets, batch gathers into reused buffers, and concatenation.
import ForgeData
import Testing

@Suite struct DatasetTests {
    private let dataset = Dataset(features: [1, 2, 3, 4, 5, 6], labels: [10, 20, 30], width: 2)

    @Test func exposesRows() {
        #expect(dataset.count == 3)
        #expect(Array(dataset.row(1)) == [3, 4])
        #expect(Dataset(width: 5).count == 0)
    }

    @Test func takesSubsetsInTheGivenOrder() {
        let subset = dataset.subset([2, 0, 2])
        #expect(subset == Dataset(features: [5, 6, 1, 2, 5, 6], labels: [30, 10, 30], width: 2))
        #expect(dataset.subset([Int]()) == Dataset(width: 2))
    }

    @Test func copiesRowsIntoReusedBuffers() {
        var features = [Float](repeating: -1, count: 10)
        var labels: [Float] = [-1]
        dataset.copyRows([1, 2][...], features: &features, labels: &labels)
        #expect(features == [3, 4, 5, 6])
        #expect(labels == [20, 30])
    }

    @Test func concatenatesPartsOfOneWidth() throws {
        let other = Dataset(features: [7, 8], labels: [40], width: 2)
        let joined = try Dataset.concatenate([NamedDataset(name: "a", dataset: dataset), NamedDataset(name: "b", dataset: other)])
        #expect(joined == Dataset(features: [1, 2, 3, 4, 5, 6, 7, 8], labels: [10, 20, 30, 40], width: 2))
        let wide = Dataset(features: [1, 2, 3], labels: [0], width: 3)
        #expect(throws: DataError.widthMismatch(file: "a", width: 2, otherFile: "c", otherWidth: 3)) {
            try Dataset.concatenate([NamedDataset(name: "a", dataset: dataset), NamedDataset(name: "b", dataset: other),
                                     NamedDataset(name: "c", dataset: wide)])
        }
    }
}
