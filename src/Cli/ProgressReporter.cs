using System.Globalization;

namespace PoissonFlow.Cli;

/// <summary>
/// Reports progress of long work (training steps, sampling batches). On a terminal it keeps one line up to date
/// in place (at most ten redraws a second); otherwise (a log file, CI) it writes one plain line every few seconds,
/// so logs stay readable. Each line shows the step, the loss when given, steps per second and the time left.
/// </summary>
/// <remarks>
/// The rate is measured from the first report on, not from construction, so a slow first step (kernel
/// compilation, warm-up) does not distort the estimate of the time left.
/// </remarks>
public sealed class ProgressReporter
{
    private readonly TextWriter _writer;
    private readonly TimeProvider _clock;
    private readonly string _unit;
    private readonly long _start;
    private long? _firstStep;
    private long _firstTime;
    private long _lastWrite;
    private bool _written;
    private int _lastLength;
    private long _lastStep;
    private double? _lastLoss;

    /// <summary>Creates a reporter.</summary>
    /// <param name="writer">Where lines go (stdout).</param>
    /// <param name="totalSteps">The number of steps of the whole run; 0 or less when unknown (no time left shown).</param>
    /// <param name="interactive">True for a terminal: one line redrawn with a carriage return.</param>
    /// <param name="clock">The clock (a fake in tests).</param>
    /// <param name="plainInterval">Time between lines when not interactive (default 5 s).</param>
    /// <param name="unit">What a step is called in the line ("step", "batch").</param>
    public ProgressReporter(TextWriter writer, long totalSteps, bool interactive, TimeProvider? clock = null,
        TimeSpan? plainInterval = null, string unit = "step")
    {
        _writer = writer ?? throw new ArgumentNullException(nameof(writer));
        TotalSteps = totalSteps;
        Interactive = interactive;
        _clock = clock ?? TimeProvider.System;
        PlainInterval = plainInterval ?? TimeSpan.FromSeconds(5);
        _unit = unit;
        _start = _clock.GetTimestamp();
    }

    /// <summary>The number of steps of the run (0 or less: unknown).</summary>
    public long TotalSteps { get; }

    /// <summary>True when the line is redrawn in place.</summary>
    public bool Interactive { get; }

    /// <summary>Time between plain lines when not interactive.</summary>
    public TimeSpan PlainInterval { get; }

    /// <summary>Minimum time between redraws on a terminal.</summary>
    public static TimeSpan RedrawInterval { get; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Records that <paramref name="step"/> steps are done, with the latest loss if any; writes when due.</summary>
    public void Report(long step, double? loss = null)
    {
        long now = _clock.GetTimestamp();
        if (_firstStep is null)
        {
            _firstStep = step;
            _firstTime = now;
        }

        _lastStep = step;
        _lastLoss = loss;
        TimeSpan sinceWrite = _clock.GetElapsedTime(_written ? _lastWrite : _start, now);
        bool due = Interactive ? !_written || sinceWrite >= RedrawInterval : sinceWrite >= PlainInterval;
        if (due) Write(now, final: false);
    }

    /// <summary>Writes the final line (always, whatever the interval) and ends the terminal line.</summary>
    public void Finish()
    {
        if (_firstStep is null) return;
        Write(_clock.GetTimestamp(), final: true);
    }

    /// <summary>The text of a progress line for the given state (no carriage return or padding).</summary>
    public string Describe(long step, double? loss, double? stepsPerSecond, TimeSpan elapsed)
    {
        var c = CultureInfo.InvariantCulture;
        var parts = new List<string>(4)
        {
            TotalSteps > 0
                ? string.Create(c, $"{_unit} {step}/{TotalSteps} ({100.0 * step / TotalSteps:F0}%)")
                : string.Create(c, $"{_unit} {step}"),
        };
        if (loss is { } l) parts.Add(string.Create(c, $"loss {l:G5}"));
        parts.Add(stepsPerSecond is { } rate ? string.Create(c, $"{rate:G3} {_unit}s/s") : $"-- {_unit}s/s");
        if (TotalSteps > 0 && step < TotalSteps && stepsPerSecond is > 0)
        {
            parts.Add("left " + FormatDuration(TimeSpan.FromSeconds((TotalSteps - step) / stepsPerSecond.Value)));
        }
        else
        {
            parts.Add("elapsed " + FormatDuration(elapsed));
        }

        return string.Join("  ", parts);
    }

    /// <summary>Formats a duration as m:ss, or h:mm:ss from one hour on.</summary>
    public static string FormatDuration(TimeSpan duration)
    {
        if (duration < TimeSpan.Zero) duration = TimeSpan.Zero;
        long seconds = (long)Math.Round(duration.TotalSeconds);
        return seconds >= 3600
            ? string.Create(CultureInfo.InvariantCulture, $"{seconds / 3600}:{seconds / 60 % 60:D2}:{seconds % 60:D2}")
            : string.Create(CultureInfo.InvariantCulture, $"{seconds / 60}:{seconds % 60:D2}");
    }

    private void Write(long now, bool final)
    {
        double measured = _clock.GetElapsedTime(_firstTime, now).TotalSeconds;
        long steps = _lastStep - _firstStep!.Value;
        double? rate = steps > 0 && measured > 0 ? steps / measured : null;
        string text = Describe(_lastStep, _lastLoss, rate, _clock.GetElapsedTime(_start, now));
        if (Interactive)
        {
            // Pad with spaces so a shorter line fully covers the previous one.
            _writer.Write("\r" + text.PadRight(_lastLength));
            _lastLength = text.Length;
            if (final) _writer.WriteLine();
        }
        else
        {
            _writer.WriteLine(text);
        }

        _writer.Flush();
        _written = true;
        _lastWrite = now;
    }
}
