package events

// alertKinds are the kinds of the alert area: alerts the hub's alerter
// publishes, silences operators add and remove, and the notifier's delivery
// audit. Each entry needs a Go type and a schema file.
func alertKinds() []Kind {
	return []Kind{
		{Name: "alert.firing", Origin: FromHub, Doc: "an alert started, repeats, changed severity or ended its silence (pinkie.alert.<host>.<rule>)", New: func() any { return new(Alert) },
			HubSubject: func(d any) string { return AlertSubject(d.(*Alert).Host, d.(*Alert).Rule) }},
		{Name: "alert.resolved", Origin: FromHub, Doc: "an alert ended (pinkie.alert.<host>.<rule>)", New: func() any { return new(Alert) },
			HubSubject: func(d any) string { return AlertSubject(d.(*Alert).Host, d.(*Alert).Rule) }},
		{Name: "silence.added", Origin: FromClient, Doc: "an operator silenced alerts matching host, rule, object or labels until a time", New: func() any { return new(SilenceAdded) },
			HubSubject: func(d any) string { return SilenceAddedSubject(d.(*SilenceAdded).ID) }},
		{Name: "silence.removed", Origin: FromClient, Doc: "an operator removed a silence before it expired", New: func() any { return new(SilenceRemoved) },
			HubSubject: func(d any) string { return SilenceRemovedSubject(d.(*SilenceRemoved).ID) }},
		{Name: "notify.delivery", Origin: FromHub, Doc: "the notifier's attempt to deliver alerts to a channel and its outcome (pinkie.notify.<channel>.<outcome>)", New: func() any { return new(NotifyDelivery) },
			HubSubject: func(d any) string {
				n := d.(*NotifyDelivery)
				return NotifySubject(n.Channel, n.Outcome)
			}},
	}
}
