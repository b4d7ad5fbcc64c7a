// Package registry is Macula's realm-wide registry: unique names and
// process groups, with monitors, dispatch and named subclusters, replicated
// between the nodes of a realm and healed after partitions.
//
// The full description (model, guarantees, conflict resolution, wire
// format) is in docs/registry.md; this comment is its summary.
package registry
