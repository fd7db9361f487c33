import SluiceCore

extension ConfigMap {
    /// Takes the keys of `keys` this section sets, which the Collector defines but
    /// which change nothing in Sluice, with a warning for each that names the key and
    /// why (`validate` prints it, the log has it at start): a key is implemented or
    /// named, never silently accepted.
    func keysWithoutEffect(_ keys: [(key: String, why: String)]) {
        for (key, why) in keys where has(key) {
            accept(key)
            warn(key, "has no effect in Sluice (\(why)); remove it to silence this warning")
        }
    }
}
