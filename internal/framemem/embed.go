package framemem

// Embed carries a budget. ingest.Dispatcher embeds it through an
// unexported alias, so quicbridge can find the budget of the dispatcher it
// feeds (Of) while nothing outside gyre can: the method is unexported, and
// Embed has no exported ones (they would be promoted to the dispatcher's
// public API).
type Embed struct{ b *Budget }

// NewEmbed wraps a budget for embedding.
func NewEmbed(b *Budget) Embed { return Embed{b: b} }

func (e *Embed) frameMemory() *Budget { return e.b }

type holder interface{ frameMemory() *Budget }

// Of returns the budget embedded in x, or nil if x has none.
func Of(x any) *Budget {
	if h, ok := x.(holder); ok {
		return h.frameMemory()
	}
	return nil
}
