package streams

import "github.com/pinkiefleet/pinkie/events"

// AlertLogStream stores silences (pinkie.silence.>) and the notifier's
// delivery audit (pinkie.notify.>).
const AlertLogStream = events.StreamAlertLog

// AlerterBucket holds the alerter's own state (pending and firing alerts,
// fitted series, silences), apart from the pinkie-alerts projection that
// readers use.
const AlerterBucket = events.BucketAlerter
