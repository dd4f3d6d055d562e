// Package events is pinkie's event model: CloudEvents 1.0 in structured JSON
// mode, the catalog of event kinds with their Go data types, and the naming
// rules for hosts and NATS subjects. It depends only on the standard library
// and the CloudEvents SDK's event package, so every other package can use it.
package events
