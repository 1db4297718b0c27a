package auth

// RecordsChanged tells the authenticator that a write made elsewhere changed its store (a
// cluster node applying a replicated write): a user or token that appears ends open mode here
// too, as creating one on this node does (a delete there means one existed: open mode was over).
// ns is the namespace written. It does not block.
func (a *Authenticator) RecordsChanged(ns string) {
	if ns == nsUsers || ns == nsTokens {
		a.open.Store(false)
	}
}
