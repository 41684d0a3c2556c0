// forge: one executable, a subcommand for every role.
import ForgeTensor
import Foundation

// A process started from a thread that blocks signals (libdispatch's worker threads do, and so
// do test runners) inherits that mask, and so would every rank it starts: SIGTERM would wait
// forever. Start with every signal deliverable.
var everySignal = sigset_t()
sigemptyset(&everySignal)
sigprocmask(SIG_SETMASK, &everySignal, nil)

// This thread computes (training runs on it): flush denormals before any float work.
FloatEnvironment.enableFlushToZero()
BLASBootstrap.ensureCoreType()
Forge.main()
