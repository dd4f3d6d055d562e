// Package shell is the host side and the wire vocabulary of pinkie shell
// sessions: it runs a session's process (a command on pipes, or a login
// shell or command on a pty) as a chosen local user, and defines the
// control messages and the credit window both ends use for flow control,
// the command line an operator's arguments make and the playback of a
// recorded session (asciicast v2).
// It does not talk NATS: streams carries the bytes.
package shell
