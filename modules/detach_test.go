package modules

import "testing"

func TestDetachedMemberFixtures(t *testing.T) {
	runFixtures(t, "detach", func(args []byte) (Resource, error) { return decodeStrict[DetachedMember](args) })
}
