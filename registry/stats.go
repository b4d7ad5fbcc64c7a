package registry

// Stats counts what a registry holds and did since New.
type Stats struct {
	// Names and Members are the names and group memberships in this
	// node's view, in every connected cluster; Local ones belong to this
	// node's processes.
	Names        int `json:"names"`
	Members      int `json:"members"`
	LocalEntries int `json:"local_entries"`
	// Processes is the number of live local processes.
	Processes int `json:"processes"`
	// Clusters is the number of named clusters connected.
	Clusters int `json:"clusters"`
	// Peers is the number of peers with a registry link.
	Peers int `json:"peers"`
	// Conflicts counts names this node's processes lost to another
	// registration.
	Conflicts uint64 `json:"conflicts"`
	// FramesSent and FramesReceived count frames on the links.
	FramesSent     uint64 `json:"frames_sent"`
	FramesReceived uint64 `json:"frames_received"`
	// DeltasApplied and SnapshotsApplied count replicated changes
	// applied: deltas, and full copies of a node's entries.
	DeltasApplied    uint64 `json:"deltas_applied"`
	SnapshotsApplied uint64 `json:"snapshots_applied"`
	// Resyncs counts deltas that started after what this node held (it
	// asked the peer for what it missed).
	Resyncs uint64 `json:"resyncs"`
	// MessagesSent and MessagesReceived count send frames (a Send, or a
	// Dispatch's message to one node).
	MessagesSent     uint64 `json:"messages_sent"`
	MessagesReceived uint64 `json:"messages_received"`
	// DroppedSend counts messages not sent: a full peer queue, or no link
	// to the node of a dispatch's member.
	DroppedSend uint64 `json:"dropped_send"`
	// DroppedMailbox counts messages from other nodes dropped at a full
	// local mailbox; NoProcess those for a local process that was gone.
	DroppedMailbox uint64 `json:"dropped_mailbox"`
	NoProcess      uint64 `json:"no_process"`
	// DroppedEvents counts events lost by monitors whose queue was full.
	DroppedEvents uint64 `json:"dropped_events"`
	// DroppedUnauthorized counts replicated entries and dispatches from
	// peers that may not have written or sent them (secure realm).
	DroppedUnauthorized uint64 `json:"dropped_unauthorized"`
	// DroppedRelayed counts entries received from a peer other than their
	// node when this node does not accept relayed entries (secure realm,
	// no membership, or a node not alive).
	DroppedRelayed uint64 `json:"dropped_relayed"`
	// DroppedOverLimit counts entries over MaxMetaSize or
	// MaxOriginEntries.
	DroppedOverLimit uint64 `json:"dropped_over_limit"`
	// BadFrames counts streams closed for a malformed frame.
	BadFrames uint64 `json:"bad_frames"`
	// ClockStampsIgnored counts clock stamps from other nodes too far
	// ahead to follow (Config.MaxClockDrift).
	ClockStampsIgnored uint64 `json:"clock_stamps_ignored"`
}

// Stats returns the counters.
func (r *Registry) Stats() Stats {
	var st Stats
	r.mu.RLock()
	cs := r.clusterList()
	st.Processes = len(r.procs)
	r.mu.RUnlock()
	st.Clusters = len(cs) - 1
	for _, c := range cs {
		for i := range c.names.shards {
			sh := &c.names.shards[i]
			sh.mu.RLock()
			st.Names += len(sh.m)
			sh.mu.RUnlock()
		}
		for i := range c.groups.shards {
			sh := &c.groups.shards[i]
			sh.mu.RLock()
			for _, g := range sh.m {
				st.Members += len(g.members)
			}
			sh.mu.RUnlock()
		}
	}
	st.LocalEntries = int(r.localEntries.Load())
	st.Peers = len(r.linkedPeers(""))
	s := &r.stats
	st.Conflicts = s.conflicts.Load()
	st.FramesSent, st.FramesReceived = s.framesSent.Load(), s.framesReceived.Load()
	st.DeltasApplied, st.SnapshotsApplied = s.deltasApplied.Load(), s.snapshotsApplied.Load()
	st.Resyncs = s.resyncAsked.Load()
	st.MessagesSent, st.MessagesReceived = s.sentMessages.Load(), s.receivedMessages.Load()
	st.DroppedSend, st.DroppedMailbox, st.NoProcess = s.droppedSend.Load(), s.droppedMailbox.Load(), s.noProcess.Load()
	st.DroppedEvents = s.droppedEvents.Load()
	st.DroppedUnauthorized, st.DroppedRelayed, st.DroppedOverLimit = s.droppedUnauthorized.Load(), s.droppedRelayed.Load(), s.droppedOverLimit.Load()
	st.BadFrames = s.badFrames.Load()
	st.ClockStampsIgnored = r.clock.ignored.Load()
	return st
}
