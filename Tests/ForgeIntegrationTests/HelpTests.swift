// The command line's own documentation: help exits 0 and names the documented flags.
import Testing

@Suite struct HelpTests {
    @Test func rootHelpListsTheCommands() throws {
        let run = try ForgeProcess.run(["--help"])
        #expect(run.status == 0, "\(run)")
        for command in ["train", "predict", "keygen", "info"] {
            #expect(run.standardOutput.contains("  \(command) "), "forge --help does not list \(command)")
        }
    }

    @Test func trainHelpNamesTheDocumentedFlags() throws {
        let run = try ForgeProcess.run(["train", "--help"])
        #expect(run.status == 0, "\(run)")
        for flag in ["--algorithm", "--train", "--validation", "--hyperparameters", "-H", "--output", "--instance-count"] {
            #expect(run.standardOutput.contains(flag), "forge train --help does not mention \(flag)")
        }
        #expect(run.standardOutput.contains("epoch=3 step=420 train:loss=0.123400 validation:accuracy=0.971200"))
    }

    @Test func predictHelpNamesItsFlags() throws {
        let run = try ForgeProcess.run(["predict", "--help"])
        #expect(run.status == 0, "\(run)")
        for flag in ["--model", "--input", "--output"] {
            #expect(run.standardOutput.contains(flag), "forge predict --help does not mention \(flag)")
        }
    }
}
