package policy

// Policy is the operator-facing policy (the [policy] and [docker] parts of the config that
// shape classification). Compile turns it, with the embedded grammar, into Tables.
type Policy struct {
	// Mode is ActionBlock (enforce) or ActionAudit; audit turns every block into an audit.
	Mode Action
	// Block lists operations (exec, cp, ..., see Operations) or command paths
	// ("system prune", "compose down", "buildx prune") to block, with all their equivalents.
	Block []string
	// Escape is the action for the escape-flags rule (block, audit or off).
	Escape Action
	// Unknown is the action for unknown commands, plugins and argv docker would reject.
	Unknown Action
	// SensitivePaths are host paths a bind mount may not overlap.
	SensitivePaths []string
	// Plugins are the trusted CLI plugins (compose, buildx) whose grammar is known.
	Plugins []string
}
