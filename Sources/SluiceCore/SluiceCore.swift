// SluiceCore: what turns decoded batches into a running pipeline — the
// configuration model (the Collector's format, with line-numbered diagnostics), the
// component protocols and registry, the pipeline log, the delivery loop (retry,
// status, dead-letter) and Sluice's own metrics and logs. Nothing here knows about
// a particular destination.
@_exported import SluiceOTLP
