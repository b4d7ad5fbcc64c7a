//go:build race

package actors

// raceEnabled: the race detector makes the memory test's 100,000 actors
// slow and its figure meaningless (shadow memory), so it is skipped.
const raceEnabled = true
