package fanout

import "github.com/fanout/fanout/spec"

type (
	// Spec is a whole sweep in serializable form; see spec.Spec.
	Spec = spec.Spec
	// Lists opens the lines of a "-" or @FILE entry of a Spec; see
	// spec.Lists.
	Lists = spec.Lists
)
