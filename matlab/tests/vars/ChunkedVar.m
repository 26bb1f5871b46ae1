classdef ChunkedVar < scistack.BaseVariable
end
