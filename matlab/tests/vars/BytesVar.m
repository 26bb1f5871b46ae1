classdef BytesVar < scistack.BaseVariable
end
