function y = bad_output(signal) %#ok<INUSD>
%BAD_OUTPUT Returns a value scistack cannot store (a function handle).
y = @sin;
end
