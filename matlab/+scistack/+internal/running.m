function name = running(set_to)
%RUNNING The cached function whose body runs now ('' when none); RUNNING(NAME) sets it.
%   A variable that function loads itself is an input its call key cannot see (after the
%   variable changed, a cache hit would serve the old result), so BaseVariable.load refuses
%   it while a for_each or Thunk call runs the body.
persistent current
if isempty(current)
    current = '';
end
if nargin > 0
    current = set_to;
end
name = current;
end
