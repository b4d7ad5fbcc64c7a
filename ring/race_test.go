//go:build race

package ring

// raceEnabled: the race detector makes Place about ten times slower, so the
// table test runs fewer trials under it.
const raceEnabled = true
