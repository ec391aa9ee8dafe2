package store

import "golang.org/x/sys/unix"

// setLock takes an open file description lock: owned by the Store's
// descriptor, so two Stores of one process exclude each other too, and
// closing another descriptor of the file does not drop it.
const setLock = unix.F_OFD_SETLK
