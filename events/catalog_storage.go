package events

// storageKinds are the kinds of the storage producers (smart, zfs, btrfs,
// mdraid, fs, path, postgres). Each entry needs a Go type and a schema file.
func storageKinds() []Kind {
	return nil
}
