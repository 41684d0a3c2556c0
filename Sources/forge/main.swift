// forge: one executable, a subcommand for every role.
import ForgeTensor

// This thread computes (training runs on it): flush denormals before any float work.
FloatEnvironment.enableFlushToZero()
BLASBootstrap.ensureCoreType()
Forge.main()
