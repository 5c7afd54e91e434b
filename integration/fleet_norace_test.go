//go:build !race

package integration

// fleetRace: the race detector is off.
const fleetRace = false
