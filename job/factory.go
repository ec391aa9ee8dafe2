package job

import "encoding/json"

// Decoded is the Factory of a kind whose options are one Config type C:
// it decodes them (DecodeOptions) and builds the job with newJob.
func Decoded[C any, J Job](kind string, newJob func(C) (J, error)) Factory {
	return func(options json.RawMessage) (Job, error) {
		c, err := decode[C](kind, options)
		if err != nil {
			return nil, err
		}
		j, err := newJob(c)
		if err != nil {
			return nil, err // not a typed nil in a Job
		}
		return j, nil
	}
}

// DecodedExpander is Decoded for a kind's Traits.Expander.
func DecodedExpander[C any, E Expander](kind string, newExpander func(C) (E, error)) func(json.RawMessage) (Expander, error) {
	return func(options json.RawMessage) (Expander, error) {
		c, err := decode[C](kind, options)
		if err != nil {
			return nil, err
		}
		e, err := newExpander(c)
		if err != nil {
			return nil, err
		}
		return e, nil
	}
}

func decode[C any](kind string, options json.RawMessage) (C, error) {
	var c C
	err := DecodeOptions(kind, options, &c)
	return c, err
}
