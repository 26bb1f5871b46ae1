function f = Fixed(varargin)
%FIXED Alias of scistack.Fixed, for code written against the scidb name.
f = scistack.Fixed(varargin{:});
end
