//go:build race

package integration

// fleetRace: the race detector is on, and every pgcertgate hop (TLS
// handshakes above all) costs several times its usual CPU.
const fleetRace = true
