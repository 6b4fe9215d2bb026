using PoissonFlow.Cli;

namespace PoissonFlow.Tests;

/// <summary>The progress reporter with a hand-driven clock: what it writes, when, and the rate and time left it shows.</summary>
public sealed class CliProgressReporterTests
{
    /// <summary>A clock that only moves when told to.</summary>
    private sealed class ManualClock : TimeProvider
    {
        private long _ticks = 1_000_000;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => _ticks;

        public void Advance(TimeSpan by) => _ticks += by.Ticks;
    }

    [Test]
    public void PlainOutputWritesOneLinePerInterval()
    {
        var clock = new ManualClock();
        var writer = new StringWriter { NewLine = "\n" };
        var progress = new ProgressReporter(writer, totalSteps: 100, interactive: false, clock, TimeSpan.FromSeconds(5));
        for (int step = 1; step <= 12; step++)
        {
            clock.Advance(TimeSpan.FromSeconds(1));
            progress.Report(step, loss: 1.0 / step);
        }

        // Reports at t = 1..12 s; lines are due at t = 5 s and t = 10 s.
        var lines = writer.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(2), writer.ToString());
        Assert.That(writer.ToString(), Does.Not.Contain("\r"));
        // Rate measured from the first report (step 1 at t = 1 s): 4 steps in 4 s; 95 steps left -> 1:35.
        Assert.That(lines[0], Is.EqualTo("step 5/100 (5%)  loss 0.2  1 steps/s  left 1:35"));
        Assert.That(lines[1], Is.EqualTo("step 10/100 (10%)  loss 0.1  1 steps/s  left 1:30"));
        progress.Finish();
        Assert.That(writer.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1], Does.StartWith("step 12/100 (12%)  loss 0.083333"));
    }

    [Test]
    public void SlowFirstStepDoesNotDistortTheRate()
    {
        var clock = new ManualClock();
        var writer = new StringWriter { NewLine = "\n" };
        var progress = new ProgressReporter(writer, totalSteps: 1000, interactive: false, clock, TimeSpan.FromSeconds(5));
        clock.Advance(TimeSpan.FromSeconds(30)); // compilation before the first step
        progress.Report(1);
        for (int step = 2; step <= 41; step++)
        {
            clock.Advance(TimeSpan.FromSeconds(0.125));
            progress.Report(step);
        }

        // 40 steps in 5 s after the first: 8 steps/s; 959 left -> 120 s = 2:00.
        Assert.That(writer.ToString(), Does.Contain("step 41/1000 (4%)  8 steps/s  left 2:00"));
    }

    [Test]
    public void TerminalOutputRedrawsOneLineAtMostTenTimesASecond()
    {
        var clock = new ManualClock();
        var writer = new StringWriter { NewLine = "\n" };
        var progress = new ProgressReporter(writer, totalSteps: 50, interactive: true, clock);
        for (int step = 1; step <= 50; step++)
        {
            clock.Advance(TimeSpan.FromMilliseconds(20));
            progress.Report(step, loss: 100.0 / step);
        }

        string text = writer.ToString();
        Assert.That(text, Does.Not.Contain("\n"), "the line is redrawn in place until the end");
        int redraws = text.Count(c => c == '\r');
        // 50 reports 20 ms apart span 1 s: the first draws at once, then one redraw per 100 ms.
        Assert.That(redraws, Is.InRange(9, 11));
        progress.Finish();
        text = writer.ToString();
        Assert.That(text, Does.EndWith("\n"));
        Assert.That(text.Split('\r')[^1], Does.StartWith("step 50/50 (100%)  loss 2  50 steps/s  elapsed 0:01"));
    }

    [Test]
    public void ShorterLineCoversTheLongerOneBeforeIt()
    {
        var clock = new ManualClock();
        var writer = new StringWriter();
        var progress = new ProgressReporter(writer, totalSteps: 0, interactive: true, clock);
        progress.Report(1, loss: 123.456789);
        clock.Advance(TimeSpan.FromSeconds(1));
        progress.Report(2);
        var draws = writer.ToString().Split('\r', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(draws, Has.Length.EqualTo(2));
        Assert.That(draws[1].Length, Is.GreaterThanOrEqualTo(draws[0].Length), "padded with spaces to erase the old text");
        Assert.That(draws[1].TrimEnd(), Is.EqualTo("step 2  1 steps/s  elapsed 0:01"), "unknown total: no time left shown");
    }

    [Test]
    public void NothingIsWrittenBeforeTheFirstReport()
    {
        var writer = new StringWriter();
        new ProgressReporter(writer, 10, interactive: true, new ManualClock()).Finish();
        Assert.That(writer.ToString(), Is.Empty);
    }

    [TestCase(0, "0:00")]
    [TestCase(59.4, "0:59")]
    [TestCase(65, "1:05")]
    [TestCase(3599, "59:59")]
    [TestCase(3725, "1:02:05")]
    [TestCase(-3, "0:00")]
    public void DurationsAreShortAndReadable(double seconds, string expected) =>
        Assert.That(ProgressReporter.FormatDuration(TimeSpan.FromSeconds(seconds)), Is.EqualTo(expected));
}
