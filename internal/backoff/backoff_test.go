package backoff

import (
	"testing"
	"time"
)

func TestWait(t *testing.T) {
	for _, c := range []struct {
		failures int
		want     time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {10, time.Minute}} {
		got := Wait(time.Second, time.Minute, c.failures)
		if got > c.want || got < c.want-c.want/5 {
			t.Errorf("Wait(1s, 1m, %d) = %v, want %v minus at most 20%%", c.failures, got, c.want)
		}
	}
}
